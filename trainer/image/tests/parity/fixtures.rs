//! Reading `trainer/tests/fixtures/reference/flux-tiny/` and comparing with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anneal_model::backend::CpuBackend;
use burn::prelude::*;

pub type B = CpuBackend;

/// Every tensor of `reference.safetensors` (all f32), as values and shape.
pub type Reference = HashMap<String, (Vec<f32>, Vec<usize>)>;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/reference/flux-tiny")
}

pub fn reference() -> Reference {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (values, view.shape().to_vec()))
        })
        .collect()
}

pub fn tensor<const D: usize>(r: &Reference, name: &str) -> Tensor<B, D> {
    let (values, shape) = &r[name];
    Tensor::from_data(
        TensorData::new(values.clone(), shape.clone()),
        &Default::default(),
    )
}

/// Token ids stored as f32 `[batch, seq]`, as rows.
pub fn ids(r: &Reference, name: &str) -> Vec<Vec<u32>> {
    let (values, shape) = &r[name];
    values
        .chunks(shape[1])
        .map(|row| row.iter().map(|&v| v as u32).collect())
        .collect()
}

pub fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// `max |ours − theirs| / max |theirs|`.
pub fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}
