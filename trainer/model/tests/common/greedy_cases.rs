//! Greedy generations pinned before the generation path changed (recorded at commit
//! 63c658f, when every generation kept its own KV cache grown by concatenation and
//! decoded rows ran attention one row at a time): prompts of several lengths on the
//! reference checkpoints, without an adapter and with two different LoRA adapters.
//! Shared by anneal-model's `greedy_record` test and anneal-serve's engine tests
//! (`#[path]`), so both check the same ids.

#![allow(dead_code)]

use std::path::PathBuf;

use anneal_crds::hyperparameters::TargetModule;
use anneal_model::llm::{CausalLm, load_model};
use anneal_model::lora::{LoraSettings, attach, projections_mut};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::DType;

/// New tokens per case.
pub const NEW_TOKENS: usize = 24;

/// The checkpoints and dtypes the ids were recorded on.
pub const MODELS: [(&str, DType); 3] = [
    ("qwen2-tiny", DType::F32),
    ("anneal-tiny", DType::F32),
    ("qwen2-tiny", DType::BF16),
];

/// One generation: a prompt of `len` ids on the model with adapter `adapter`
/// (`None`: the base model).
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub len: usize,
    pub adapter: Option<usize>,
    pub salt: usize,
}

/// Rows of different lengths, the adapters interleaved with plain rows.
pub const CASES: [Case; 5] = [
    Case {
        len: 1,
        adapter: None,
        salt: 3,
    },
    Case {
        len: 6,
        adapter: Some(0),
        salt: 5,
    },
    Case {
        len: 19,
        adapter: Some(1),
        salt: 7,
    },
    Case {
        len: 45,
        adapter: Some(0),
        salt: 11,
    },
    Case {
        len: 11,
        adapter: None,
        salt: 13,
    },
];

pub fn model_dir(name: &str) -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // Both crates sit one folder below trainer/.
    let trainer = manifest.parent().unwrap();
    match name {
        "anneal-tiny" => trainer.join("../examples/models/anneal-tiny"),
        _ => trainer.join("tests/fixtures/reference").join(name),
    }
}

pub fn load<B: Backend>(name: &str, dtype: DType) -> CausalLm<B> {
    load_model::<B>(&model_dir(name), &Default::default(), dtype)
        .unwrap()
        .1
}

pub fn prompt(case: &Case, vocab: usize) -> Vec<u32> {
    (0..case.len)
        .map(|i| ((i * 37 + case.salt * 101 + 1) % vocab) as u32)
        .collect()
}

/// Adapter 0: rank 4, alpha 8 on every projection; adapter 1: rank 2, alpha 16 on
/// q, v and down. A as `attach` draws it (seeded), B from a fixed formula (not zero,
/// so each adapter changes the answer).
pub fn with_adapter<B: Backend>(base: CausalLm<B>, adapter: usize) -> CausalLm<B> {
    let (rank, alpha, modules) = match adapter {
        0 => (4, 8.0, TargetModule::ALL.to_vec()),
        _ => (
            2,
            16.0,
            vec![
                TargetModule::QProj,
                TargetModule::VProj,
                TargetModule::DownProj,
            ],
        ),
    };
    let settings = LoraSettings {
        rank,
        alpha,
        dropout: 0.0,
        target_modules: modules,
        use_rslora: false,
        seed: 17 + adapter as u64,
    };
    let device = Default::default();
    let mut model = attach(base, &settings);
    for (layer, module, projection) in projections_mut(&mut model) {
        let Some(lora) = projection.lora.as_mut() else {
            continue;
        };
        let [r, out] = lora.b.val().dims();
        let salt = layer * 7 + module as usize * 3 + adapter * 5;
        let values: Vec<f32> = (0..r * out)
            .map(|i| (((i * 31 + salt * 17) % 2001) as f32 / 1000.0 - 1.0) * 0.15)
            .collect();
        lora.b = Param::from_tensor(Tensor::from_data(
            TensorData::new(values, [r, out]),
            (&device, DType::F32),
        ));
    }
    model
}

/// The recorded ids: `RECORDED[model][case]`, in the order of [`MODELS`] and [`CASES`].
pub const RECORDED: [[&[u32]; 5]; 3] = [
    // qwen2-tiny, f32
    [
        &[
            45, 45, 45, 77, 279, 70, 402, 398, 327, 402, 327, 70, 113, 327, 402, 327, 327, 327,
            327, 327, 327, 327, 327, 327,
        ],
        &[
            308, 348, 19, 7, 216, 401, 348, 169, 310, 114, 310, 209, 386, 158, 28, 491, 26, 242,
            224, 446, 327, 159, 117, 386,
        ],
        &[
            402, 259, 70, 70, 6, 8, 316, 315, 52, 443, 8, 316, 348, 348, 316, 329, 119, 293, 8, 29,
            78, 27, 61, 8,
        ],
        &[
            355, 162, 300, 454, 454, 454, 162, 329, 109, 329, 355, 162, 6, 6, 329, 159, 7, 81, 174,
            192, 140, 355, 0, 159,
        ],
        &[
            187, 485, 485, 273, 185, 446, 101, 242, 242, 242, 242, 316, 28, 155, 503, 230, 21, 445,
            169, 169, 169, 169, 169, 169,
        ],
    ],
    // anneal-tiny, f32
    [
        &[
            1717, 1126, 1126, 1126, 1126, 1126, 1126, 1126, 1126, 1091, 256, 813, 13, 351, 658,
            658, 75, 1644, 277, 262, 1054, 262, 267, 783,
        ],
        &[
            1322, 1145, 287, 312, 845, 277, 369, 305, 361, 76, 329, 262, 1447, 277, 262, 1259, 324,
            280, 77, 374, 959, 682, 264, 312,
        ],
        &[
            277, 295, 1125, 84, 1931, 315, 315, 315, 284, 429, 454, 315, 315, 315, 315, 315, 315,
            315, 315, 647, 659, 659, 659, 659,
        ],
        &[
            282, 461, 391, 1328, 385, 680, 375, 1110, 963, 315, 829, 277, 1756, 13, 442, 612, 392,
            220, 461, 13, 450, 357, 478, 553,
        ],
        &[
            316, 262, 384, 32, 25, 351, 1362, 11, 536, 519, 1510, 1205, 315, 859, 517, 1059, 282,
            488, 300, 262, 716, 13, 403, 520,
        ],
    ],
    // qwen2-tiny, bf16
    [
        &[
            45, 45, 45, 77, 279, 70, 402, 398, 327, 402, 327, 70, 113, 327, 402, 327, 327, 327,
            327, 327, 327, 327, 327, 327,
        ],
        &[
            308, 348, 19, 114, 251, 251, 327, 210, 224, 224, 224, 70, 327, 62, 62, 480, 47, 313, 8,
            8, 8, 12, 12, 398,
        ],
        &[
            402, 259, 70, 70, 6, 8, 316, 315, 52, 443, 8, 316, 348, 348, 316, 329, 119, 293, 8, 29,
            78, 27, 61, 8,
        ],
        &[
            355, 162, 300, 454, 454, 454, 162, 329, 109, 329, 355, 144, 305, 387, 11, 145, 492, 7,
            81, 210, 52, 329, 355, 6,
        ],
        &[
            187, 485, 485, 273, 185, 446, 101, 242, 242, 242, 242, 316, 28, 326, 370, 145, 296,
            127, 127, 127, 449, 23, 23, 23,
        ],
    ],
];
