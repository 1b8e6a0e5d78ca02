//! A model loaded with its decoder layers placed across several devices (every one the
//! CPU here, so the placement's code path runs, boundaries included, and any other
//! change would show): where the stages start, and logits, decoding in the
//! preallocated cache and adapters identical to the model on one device.

use std::path::Path;

use anneal_model::backend::CpuBackend;
use anneal_model::llm::{CausalLm, KvSlots, load_model, load_model_placed};
use anneal_model::lora::{LoraSettings, attach};
use burn::prelude::*;
use burn::tensor::DType;

type B = CpuBackend;

fn tiny_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny")
}

fn ids(values: &[i64]) -> Tensor<B, 2, Int> {
    Tensor::<B, 1, Int>::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        &Default::default(),
    )
    .reshape([1, values.len()])
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn placed(devices: usize) -> CausalLm<B> {
    load_model_placed::<B>(
        &tiny_model(),
        &vec![Default::default(); devices],
        DType::F32,
        anneal_model::backend::LayerStorage::Computed,
    )
    .unwrap()
    .1
}

#[test]
fn stages_start_where_the_balanced_split_says() {
    let one = load_model::<B>(&tiny_model(), &Default::default(), DType::F32)
        .unwrap()
        .1;
    assert_eq!(one.layers.len(), 4);
    assert!(!one.is_placed());
    assert_eq!(placed(3).stage_starts, vec![2, 3]);
    assert_eq!(placed(2).stage_starts, vec![2]);
    // More devices than layers: one layer per device, the rest unused.
    assert_eq!(placed(6).stage_starts, vec![1, 2, 3]);
}

#[test]
fn a_placed_model_computes_what_the_model_on_one_device_does() {
    let one = load_model::<B>(&tiny_model(), &Default::default(), DType::F32)
        .unwrap()
        .1;
    let three = placed(3);
    let prompt: Vec<i64> = (0..40).map(|i| (i * 7 % 300) + 3).collect();
    assert_eq!(
        values(three.forward(ids(&prompt))),
        values(one.forward(ids(&prompt)))
    );

    // Decoding with the cache: the prompts into their slots (each layer's keys and
    // values on its own device), then one token for two rows at once.
    let decode = |model: &CausalLm<B>| {
        let mut cache = KvSlots::new(model, 2, 64);
        cache.reserve(26);
        for (slot, p) in [&prompt[..25], &prompt[..9]].iter().enumerate() {
            cache.fill(slot, model.forward_hidden(ids(p), None).1);
        }
        let logits = model.decode_rows(&[5, 17], &[0, 1], &mut cache, None);
        (values(logits), cache.len(0))
    };
    let (three_logits, three_len) = decode(&three);
    assert_eq!(three_logits, decode(&one).0);
    assert_eq!(three_len, 26);

    // Adapters are made on their projection's device and change nothing at B = 0.
    let settings = LoraSettings {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: anneal_crds::hyperparameters::TargetModule::ALL.to_vec(),
        use_rslora: false,
        seed: 1,
    };
    let adapted = attach(three, &settings);
    assert_eq!(
        values(adapted.forward(ids(&prompt))),
        values(one.forward(ids(&prompt)))
    );
}
