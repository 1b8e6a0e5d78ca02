//! Loading refuses a model folder it cannot serve, naming what is wrong.

use std::collections::HashMap;

use std::path::Path;

use crate::support::qwen;
use anneal_model::backend::CpuBackend;
use anneal_model::llm::load_model;
use burn::tensor::DType;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// A copy of the Qwen2 fixture whose weights went through `edit` (name -> (shape, f32 values)).
fn edited_copy(
    edit: impl FnOnce(&mut HashMap<String, (Vec<usize>, Vec<f32>)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(qwen().join(file), dir.path().join(file)).unwrap();
    }
    let bytes = std::fs::read(qwen().join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut weights: HashMap<String, (Vec<usize>, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32);
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect();
    edit(&mut weights);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = weights
        .into_iter()
        .map(|(name, (shape, values))| {
            (
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match load_model::<CpuBackend>(dir, &Default::default(), DType::F32) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(err) => err.to_string(),
    }
}

#[test]
fn an_unchanged_copy_loads() {
    let dir = edited_copy(|_| {});
    load_model::<CpuBackend>(dir.path(), &Default::default(), DType::F32).unwrap();
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = edited_copy(|w| {
        w.remove("model.layers.1.mlp.up_proj.weight");
    });
    assert_eq!(
        load_error(dir.path()),
        "tensor model.layers.1.mlp.up_proj.weight: missing from the safetensors files"
    );
}

#[test]
fn a_misshaped_tensor_is_named_with_both_shapes() {
    let dir = edited_copy(|w| {
        let (shape, values) = w.get_mut("model.layers.0.self_attn.k_proj.weight").unwrap();
        *shape = vec![shape[0] / 2, shape[1]];
        values.truncate(shape[0] * shape[1]);
    });
    let err = load_error(dir.path());
    assert!(
        err.starts_with(
            "tensor model.layers.0.self_attn.k_proj.weight: config.json implies shape [32, 64], "
        ),
        "{err}"
    );
    assert!(err.ends_with("model.safetensors holds [16, 64]"), "{err}");
}

#[test]
fn an_unknown_architecture_is_named() {
    let dir = edited_copy(|_| {});
    let config = std::fs::read_to_string(dir.path().join("config.json"))
        .unwrap()
        .replace("Qwen2ForCausalLM", "GPT2LMHeadModel");
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.ends_with("config.json: architecture \"GPT2LMHeadModel\" is not supported; supported: Qwen2ForCausalLM (Qwen2, Qwen2.5) and LlamaForCausalLM (Llama 3, 3.1)"),
        "{err}"
    );
}
