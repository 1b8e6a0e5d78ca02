//! Writing tensors out as a safetensors file: the adapter, full-model and
//! optimizer-state writers all collect `(name, dtype, shape, bytes)` rows and end here.

use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::{SafeTensorError, TensorView};

/// One tensor to write: its name, element type, shape and little-endian bytes.
pub type TensorRow = (String, Dtype, Vec<usize>, Vec<u8>);

/// Writes `rows` to `path`, without header metadata (so equal tensors give equal bytes).
pub fn write_safetensors(rows: &[TensorRow], path: &Path) -> Result<(), SafeTensorError> {
    let views: Vec<(String, TensorView<'_>)> = rows
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            let view =
                TensorView::new(*dtype, shape.clone(), bytes).expect("shape matches the data");
            (name.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path)
}
