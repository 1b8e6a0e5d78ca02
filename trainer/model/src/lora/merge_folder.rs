//! A LoRA adapter folder merged into its base model folder, on disk: a new model folder
//! (`W + s·B·A` for every adapted projection, every other tensor as it was) that any
//! runtime without LoRA support loads like the base.
//!
//! Tensor by tensor, never the whole model: the base's safetensors are memory-mapped,
//! each merged tensor is computed in f32 and rounded once into the base's dtype, and the
//! output is written as it goes into shards planned from the base's tensor sizes (the
//! dtypes do not change, so neither do the sizes). The peak is one tensor in f32 plus the
//! adapter: for Qwen2.5-7B the largest projection (18,944 x 3,584) is 272 MB in f32, for
//! 72B (29,568 x 8,192) 969 MB; the embedding, copied as it is, passes through as bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anneal_crds::hyperparameters::lora_scale;
use burn::prelude::*;
use burn::tensor::DType;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::peft::{AdapterError, WEIGHTS_FILE, read_adapter_config};
use crate::backend::CpuBackend;
use crate::llm::weights::shard_names;

/// Shards of the merged model are at most this big (transformers' default is 5 GB).
pub const SHARD_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// What a merge wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReport {
    /// Projections the adapter changed.
    pub merged: usize,
    /// Weight files written.
    pub shards: usize,
    /// Bytes of weights.
    pub weight_bytes: u64,
}

/// Why a merge failed; each names the file or tensor at fault.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Weights { path: PathBuf, message: String },
    #[error(
        "{tensor}: the adapter's matrices are {a:?} (A) and {b:?} (B), the base weight is {base:?}"
    )]
    Shape {
        tensor: String,
        a: Vec<usize>,
        b: Vec<usize>,
        base: Vec<usize>,
    },
    #[error("the adapter changes {0:?}, which the base model does not have")]
    Unused(Vec<String>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MergeError + '_ {
    move |source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One tensor of the base: which file, its dtype and shape, and its byte range there.
struct BaseTensor {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Writes `base` + `adapter` merged into `out` (created; must not hold a model yet):
/// the merged weights, and every other file of the base folder's top (config,
/// tokenizer, chat template) as it is.
pub fn merge_adapter_folder(
    base: &Path,
    adapter: &Path,
    out: &Path,
    shard_bytes_max: u64,
) -> Result<MergeReport, MergeError> {
    let config = read_adapter_config(adapter)?;
    let scale = lora_scale(config.lora_alpha, config.r, config.use_rslora) as f32;
    let adapter_path = adapter.join(WEIGHTS_FILE);
    let adapter_bytes = std::fs::read(&adapter_path).map_err(io(&adapter_path))?;
    let adapter_tensors =
        SafeTensors::deserialize(&adapter_bytes).map_err(|e| MergeError::Weights {
            path: adapter_path.clone(),
            message: e.to_string(),
        })?;
    let mut unused: BTreeMap<String, ()> = adapter_tensors
        .names()
        .into_iter()
        .filter_map(|name| name.strip_suffix(".lora_A.weight"))
        .map(|module| (module.to_owned(), ()))
        .collect();

    let (files, tensors) = open_base(base)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    copy_side_files(base, out)?;

    // Shards planned from the sizes, so each file's header is written before its data.
    let mut shards: Vec<Vec<&String>> = vec![Vec::new()];
    let mut shard_size = 0u64;
    for (name, tensor) in &tensors {
        let size = (tensor.end - tensor.start) as u64;
        if shard_size > 0 && shard_size + size > shard_bytes_max {
            shards.push(Vec::new());
            shard_size = 0;
        }
        shards.last_mut().expect("one shard at least").push(name);
        shard_size += size;
    }
    let count = shards.len();
    let shard_name = |index: usize| {
        if count == 1 {
            "model.safetensors".to_owned()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", index + 1)
        }
    };

    let device = burn_flex::FlexDevice;
    let mut merged = 0;
    let mut weight_bytes = 0;
    let mut weight_map = BTreeMap::new();
    for (index, names) in shards.iter().enumerate() {
        let file_name = shard_name(index);
        let path = out.join(&file_name);
        let mut writer = ShardWriter::create(
            &path,
            names.iter().map(|name| {
                let tensor = &tensors[*name];
                (
                    (*name).clone(),
                    tensor.dtype,
                    tensor.shape.clone(),
                    tensor.end - tensor.start,
                )
            }),
        )?;
        for name in names {
            let tensor = &tensors[*name];
            let bytes = &files[tensor.file].1[tensor.start..tensor.end];
            // `model.layers.3.mlp.down_proj.weight` is adapted by
            // `base_model.model.model.layers.3.mlp.down_proj.lora_{A,B}.weight`.
            let module = name
                .strip_suffix(".weight")
                .map(|stem| format!("base_model.model.{stem}"));
            match module.filter(|module| unused.contains_key(module)) {
                Some(module) => {
                    let merged_bytes = merge_one::<CpuBackend>(
                        name,
                        tensor,
                        bytes,
                        &adapter_tensors,
                        &module,
                        scale,
                        &device,
                    )?;
                    writer.write(&merged_bytes)?;
                    unused.remove(&module);
                    merged += 1;
                }
                None => writer.write(bytes)?,
            }
            weight_map.insert((*name).clone(), file_name.clone());
            weight_bytes += (tensor.end - tensor.start) as u64;
        }
        writer.finish()?;
    }
    if !unused.is_empty() {
        return Err(MergeError::Unused(unused.into_keys().collect()));
    }
    if count > 1 {
        let index = serde_json::json!({
            "metadata": {"total_size": weight_bytes},
            "weight_map": weight_map,
        });
        let path = out.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_string_pretty(&index).expect("JSON"))
            .map_err(io(&path))?;
    }
    Ok(MergeReport {
        merged,
        shards: count,
        weight_bytes,
    })
}

/// `W + s·B·A` for one base tensor, in the base's dtype.
fn merge_one<B: Backend>(
    name: &str,
    tensor: &BaseTensor,
    bytes: &[u8],
    adapter: &SafeTensors<'_>,
    module: &str,
    scale: f32,
    device: &B::Device,
) -> Result<Vec<u8>, MergeError> {
    let matrix = |which: char| -> Result<Tensor<B, 2>, MergeError> {
        let view = adapter
            .tensor(&format!("{module}.lora_{which}.weight"))
            .map_err(|e| MergeError::Weights {
                path: PathBuf::from(WEIGHTS_FILE),
                message: format!("{module}.lora_{which}.weight: {e}"),
            })?;
        let data = TensorData::from_bytes_vec(
            view.data().to_vec(),
            view.shape().to_vec(),
            dtype_of(view.dtype(), name)?,
        );
        Ok(Tensor::from_data(data, (device, DType::F32)))
    };
    let (a, b) = (matrix('A')?, matrix('B')?); // [r, in], [out, r]
    let [rank, input] = a.dims();
    let [output, rank_b] = b.dims();
    if tensor.shape != [output, input] || rank != rank_b {
        return Err(MergeError::Shape {
            tensor: name.to_owned(),
            a: vec![rank, input],
            b: vec![output, rank_b],
            base: tensor.shape.clone(),
        });
    }
    let stored = dtype_of(tensor.dtype, name)?;
    let weight = Tensor::<B, 2>::from_data(
        TensorData::from_bytes_vec(bytes.to_vec(), tensor.shape.clone(), stored),
        (device, DType::F32),
    );
    let merged = weight + b.matmul(a) * scale; // [out, in], f32
    Ok(merged.cast(stored).into_data().into_bytes().to_vec())
}

fn dtype_of(dtype: Dtype, tensor: &str) -> Result<DType, MergeError> {
    match dtype {
        Dtype::F32 => Ok(DType::F32),
        Dtype::BF16 => Ok(DType::BF16),
        Dtype::F16 => Ok(DType::F16),
        other => Err(MergeError::Weights {
            path: PathBuf::from(tensor),
            message: format!("dtype {other:?} cannot be merged (F32, BF16 or F16)"),
        }),
    }
}

/// The base's weight files, mapped, and every tensor in them by name.
#[allow(clippy::type_complexity)]
fn open_base(
    base: &Path,
) -> Result<(Vec<(PathBuf, Mmap)>, BTreeMap<String, BaseTensor>), MergeError> {
    let names = shard_names(base).map_err(|e| MergeError::Weights {
        path: base.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    let mut tensors = BTreeMap::new();
    for name in names {
        let path = base.join(&name);
        let file = File::open(&path).map_err(io(&path))?;
        // SAFETY: read-only map of a file nothing writes while the merge runs.
        let map = unsafe { Mmap::map(&file) }.map_err(io(&path))?;
        let parsed = SafeTensors::deserialize(&map).map_err(|e| MergeError::Weights {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let origin = map.as_ptr() as usize;
        for (tensor_name, view) in parsed.tensors() {
            let start = view.data().as_ptr() as usize - origin;
            tensors.insert(
                tensor_name,
                BaseTensor {
                    file: files.len(),
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    start,
                    end: start + view.data().len(),
                },
            );
        }
        files.push((path, map));
    }
    Ok((files, tensors))
}

/// Copies the files at the top of the base folder that are not its weights.
fn copy_side_files(base: &Path, out: &Path) -> Result<(), MergeError> {
    for entry in std::fs::read_dir(base).map_err(io(base))? {
        let path = entry.map_err(io(base))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
        if path.is_file() && !weights && name != "README.md" && name != "COMPLETE" {
            let target = out.join(name);
            std::fs::copy(&path, &target).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// A safetensors file written as its tensors come: the header (every tensor's dtype,
/// shape and offsets, known in advance) first, then each tensor's bytes in order.
struct ShardWriter {
    path: PathBuf,
    out: BufWriter<File>,
    expected: Vec<(String, usize)>,
    written: usize,
}

impl ShardWriter {
    fn create(
        path: &Path,
        tensors: impl Iterator<Item = (String, Dtype, Vec<usize>, usize)>,
    ) -> Result<Self, MergeError> {
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".to_owned(),
            serde_json::json!({"format": "pt"}),
        );
        let mut offset = 0;
        let mut expected = Vec::new();
        for (name, dtype, shape, size) in tensors {
            header.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": format!("{dtype:?}"),
                    "shape": shape,
                    "data_offsets": [offset, offset + size],
                }),
            );
            offset += size;
            expected.push((name, size));
        }
        let mut text = serde_json::to_string(&header).expect("JSON");
        // The data starts on an 8-byte boundary, as the safetensors crate writes it.
        while !text.len().is_multiple_of(8) {
            text.push(' ');
        }
        let file = File::create(path).map_err(io(path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&(text.len() as u64).to_le_bytes())
            .and_then(|()| out.write_all(text.as_bytes()))
            .map_err(io(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            expected,
            written: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), MergeError> {
        let (name, size) = &self.expected[self.written];
        assert_eq!(bytes.len(), *size, "{name}: planned {size} bytes");
        self.written += 1;
        self.out.write_all(bytes).map_err(io(&self.path))
    }

    fn finish(mut self) -> Result<(), MergeError> {
        assert_eq!(
            self.written,
            self.expected.len(),
            "every planned tensor written"
        );
        self.out.flush().map_err(io(&self.path))?;
        self.out.get_ref().sync_all().map_err(io(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models/anneal-tiny")
    }

    fn f32s(bytes: &[u8], dtype: Dtype) -> Vec<f32> {
        let data = TensorData::from_bytes_vec(
            bytes.to_vec(),
            [bytes.len()],
            dtype_of(dtype, "t").unwrap(),
        );
        data.convert::<f32>().to_vec().unwrap()
    }

    /// An adapter on one projection of the tiny model, its config and weights in `dir`.
    fn one_projection_adapter(
        dir: &Path,
        rank: usize,
        input: usize,
        output: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let a: Vec<f32> = (0..rank * input)
            .map(|i| ((i % 7) as f32 - 3.0) * 0.01)
            .collect();
        let b: Vec<f32> = (0..output * rank)
            .map(|i| ((i % 5) as f32 - 2.0) * 0.02)
            .collect();
        let module = "base_model.model.model.layers.1.mlp.down_proj";
        let rows = vec![
            (
                format!("{module}.lora_A.weight"),
                Dtype::F32,
                vec![rank, input],
                a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (
                format!("{module}.lora_B.weight"),
                Dtype::F32,
                vec![output, rank],
                b.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        ];
        crate::safetensors_out::write_safetensors(&rows, &dir.join(WEIGHTS_FILE)).unwrap();
        let config = serde_json::json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "anneal-tiny",
            "r": rank, "lora_alpha": 8.0, "lora_dropout": 0.0, "bias": "none",
            "target_modules": ["down_proj"], "modules_to_save": null,
        });
        std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
        (a, b)
    }

    #[test]
    fn the_merged_weight_is_the_base_plus_the_scaled_product_and_the_rest_is_untouched() {
        let (files, tensors) = open_base(&tiny_model()).unwrap();
        let down = &tensors["model.layers.1.mlp.down_proj.weight"];
        let (output, input) = (down.shape[0], down.shape[1]);
        let adapter = tempfile::tempdir().unwrap();
        let (a, b) = one_projection_adapter(adapter.path(), 4, input, output);
        let out = tempfile::tempdir().unwrap();
        let out = out.path().join("merged");
        // Small shards, so the index is written too.
        let report = merge_adapter_folder(&tiny_model(), adapter.path(), &out, 1 << 20).unwrap();
        assert_eq!(report.merged, 1);
        assert!(report.shards > 1, "{report:?}");
        assert!(out.join("model.safetensors.index.json").is_file());
        assert!(out.join("tokenizer.json").is_file() && !out.join("README.md").exists());
        // The loader reads the shards through the index.
        crate::llm::weights::SafetensorsFiles::open(&out).unwrap();

        let (merged_files, merged) = open_base(&out).unwrap();
        assert_eq!(merged.len(), tensors.len());
        let scale = 8.0 / 4.0;
        for (name, tensor) in &tensors {
            let before = &files[tensor.file].1[tensor.start..tensor.end];
            let after_tensor = &merged[name];
            let after = &merged_files[after_tensor.file].1[after_tensor.start..after_tensor.end];
            assert_eq!(
                (after_tensor.dtype, &after_tensor.shape),
                (tensor.dtype, &tensor.shape)
            );
            if name != "model.layers.1.mlp.down_proj.weight" {
                assert_eq!(before, after, "{name} is copied as it is");
                continue;
            }
            let (w, m) = (f32s(before, tensor.dtype), f32s(after, tensor.dtype));
            for (row, col) in [(0, 0), (3, 17), (output - 1, input - 1)] {
                let delta: f32 = (0..4).map(|k| b[row * 4 + k] * a[k * input + col]).sum();
                let expected = w[row * input + col] + scale * delta;
                assert!(
                    (m[row * input + col] - expected).abs() < 1e-5,
                    "{row},{col}"
                );
            }
            assert_ne!(before, after);
        }
    }

    #[test]
    fn an_adapter_for_a_module_the_base_lacks_is_refused() {
        let adapter = tempfile::tempdir().unwrap();
        let (_files, tensors) = open_base(&tiny_model()).unwrap();
        let down = &tensors["model.layers.1.mlp.down_proj.weight"];
        one_projection_adapter(adapter.path(), 2, down.shape[1], down.shape[0]);
        // Rename the adapter's tensors to layer 99.
        let bytes = std::fs::read(adapter.path().join(WEIGHTS_FILE)).unwrap();
        let parsed = SafeTensors::deserialize(&bytes).unwrap();
        let rows: Vec<_> = parsed
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                (
                    name.replace("layers.1.", "layers.99."),
                    view.dtype(),
                    view.shape().to_vec(),
                    view.data().to_vec(),
                )
            })
            .collect();
        crate::safetensors_out::write_safetensors(&rows, &adapter.path().join(WEIGHTS_FILE))
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let error = merge_adapter_folder(
            &tiny_model(),
            adapter.path(),
            &out.path().join("m"),
            SHARD_BYTES_MAX,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "the adapter changes [\"base_model.model.model.layers.99.mlp.down_proj\"], which the base model does not have"
        );
    }
}
