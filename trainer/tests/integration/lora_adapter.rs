//! LoRA adapters on the reference Qwen2 checkpoint: attaching changes nothing until
//! B moves; a merged model computes what the adapter does; the PEFT files carry
//! PEFT's names, shapes and config, and load back to the same function.

use crate::support::{last_json, qwen, trainer_generate};
use anneal_crds::hyperparameters::TargetModule;
use anneal_model::backend::CpuBackend;
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{CausalLm, load_model};
use anneal_model::lora::peft::{AdapterConfig, load_adapter, save_adapter, tensor_name};
use anneal_model::lora::{LoraSettings, attach, merge, projections_mut};
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use safetensors::SafeTensors;

type B = CpuBackend;

fn base() -> CausalLm<B> {
    load_model::<B>(&qwen(), &Default::default(), DType::F32)
        .unwrap()
        .1
}

fn settings() -> LoraSettings {
    LoraSettings {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec![
            TargetModule::QProj,
            TargetModule::VProj,
            TargetModule::DownProj,
        ],
        use_rslora: false,
        seed: 11,
    }
}

fn logits(model: &CausalLm<B>) -> Vec<f32> {
    let ids: Vec<i64> = vec![49, 345, 270, 436, 313, 259, 417, 294, 383];
    let input = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [9]), &Default::default())
        .reshape([1, 9]);
    model
        .forward(input)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Gives every B a random value, as training would, so the adapter does something.
fn trained(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, _, projection) in projections_mut(&mut model) {
        if let Some(lora) = projection.lora.as_mut() {
            let shape = lora.b.val().shape();
            lora.b = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Normal(0.0, 0.3),
                &Default::default(),
            ));
        }
    }
    model
}

#[test]
fn a_fresh_adapter_leaves_the_output_unchanged() {
    let _generator = crate::support::generator_turn();
    let before = logits(&base());
    let after = logits(&attach(base(), &settings()));
    assert_eq!(before, after);
}

#[test]
fn the_merged_model_computes_what_the_adapter_does() {
    let _generator = crate::support::generator_turn();
    let adapted = trained(attach(base(), &settings()));
    let with_adapter = logits(&adapted);
    assert!(
        max_diff(&with_adapter, &logits(&base())) > 0.1,
        "the adapter changes the output"
    );
    let merged = merge(adapted.clone());
    assert!(
        projections_mut(&mut merged.clone())
            .iter()
            .all(|(_, _, p)| p.lora.is_none())
    );
    assert!(max_diff(&with_adapter, &logits(&merged)) < 1e-4);

    let prompt = [49, 345, 270, 436];
    let params = SamplingParams {
        max_new_tokens: 12,
        ..Default::default()
    };
    let a = generate(&adapted, &prompt, &[], &params, |_| String::new(), |_| {});
    let m = generate(&merged, &prompt, &[], &params, |_| String::new(), |_| {});
    assert_eq!(a.token_ids, m.token_ids);
}

#[test]
fn a_saved_adapter_has_peft_names_and_loads_back_the_same() {
    let _generator = crate::support::generator_turn();
    let mut adapted = trained(attach(base(), &settings()));
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut adapted, &settings(), "Qwen/tiny", dir.path()).unwrap();

    let config: AdapterConfig = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            config.peft_type.as_str(),
            config.task_type.as_str(),
            config.r,
            config.lora_alpha,
            config.bias.as_str()
        ),
        ("LORA", "CAUSAL_LM", 4, 8.0, "none")
    );
    assert_eq!(config.target_modules, vec!["q_proj", "v_proj", "down_proj"]);
    assert_eq!(config.base_model_name_or_path.as_deref(), Some("Qwen/tiny"));

    let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        tensors.len(),
        2 * 3 * 2,
        "A and B for 3 modules in 2 layers"
    );
    let a = tensors
        .tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        .unwrap();
    assert_eq!(a.shape(), [4, 64], "[rank, in]");
    let b = tensors
        .tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
        .unwrap();
    assert_eq!(b.shape(), [64, 4], "[out, rank]");
    assert_eq!(
        tensor_name(0, TargetModule::VProj, 'B'),
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"
    );

    let loaded = load_adapter(base(), dir.path()).unwrap();
    assert_eq!(logits(&loaded), logits(&adapted));
}

#[test]
fn a_broken_adapter_names_the_tensor() {
    let _generator = crate::support::generator_turn();
    let mut adapted = attach(base(), &settings());
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut adapted, &settings(), "Qwen/tiny", dir.path()).unwrap();
    let path = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"r\": 4", "\"r\": 8");
    std::fs::write(&path, text).unwrap();
    let err = load_adapter(base(), dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        "adapter tensor base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight: expected shape [8, 64], found [4, 64]"
    );
}

#[test]
fn trainer_generate_applies_an_adapter() {
    let _generator = crate::support::generator_turn();
    let mut adapted = trained(attach(base(), &settings()));
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut adapted, &settings(), "Qwen/tiny", dir.path()).unwrap();
    let prompt = [49u32, 345, 270, 436];
    let params = SamplingParams {
        max_new_tokens: 10,
        ..Default::default()
    };
    // The CLI must generate what the library does with the adapter as saved (the merged
    // model agrees only up to rounding, which can flip a near-tied greedy choice).
    let reloaded = load_adapter(base(), dir.path()).unwrap();
    let want = generate(&reloaded, &prompt, &[], &params, |_| String::new(), |_| {}).token_ids;
    let plain = generate(&base(), &prompt, &[], &params, |_| String::new(), |_| {}).token_ids;
    assert_ne!(want, plain, "the adapter changes the continuation");

    let tokenizer =
        anneal_model::chat::ModelTokenizer::from_model_dir(&qwen(), "Qwen2ForCausalLM").unwrap();
    let text = tokenizer.decode(&prompt, false).unwrap();
    let adapter = dir.path().to_str().unwrap();
    let output = trainer_generate(
        &qwen(),
        &[
            "--max-new-tokens",
            "10",
            "--prompt",
            &text,
            "--adapter",
            adapter,
        ],
    );
    assert_eq!(crate::support::ids(&last_json(&output)["token_ids"]), want);
}
