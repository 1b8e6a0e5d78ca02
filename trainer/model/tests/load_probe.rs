//! By-hand probes of loading a large checkpoint (not run by `cargo test`): how long
//! `load_model` takes and how much memory it holds, on a random bf16 checkpoint of
//! Qwen2.5-0.5B's shape (494M parameters, 0.99 GB) written once to
//! `$ANNEAL_PROBE_DIR` (default `/tmp/anneal-probe-0.5b`).
//!
//! ```sh
//! cargo test -p anneal-model --test load_probe -- --ignored --nocapture write_checkpoint
//! # one process per dtype, so each peak is its own:
//! ANNEAL_PROBE_DTYPE=f32  cargo test -p anneal-model --test load_probe -- --ignored --nocapture load_checkpoint
//! ANNEAL_PROBE_DTYPE=bf16 cargo test -p anneal-model --test load_probe -- --ignored --nocapture load_checkpoint
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anneal_model::backend::CpuBackend;
use anneal_model::llm::load_model;
use burn::tensor::DType;
use safetensors::{Dtype, View};

const HIDDEN: usize = 896;
const LAYERS: usize = 24;
const HEADS: usize = 14;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 64;
const FFN: usize = 4864;
const VOCAB: usize = 151_936;

fn probe_dir() -> PathBuf {
    std::env::var_os("ANNEAL_PROBE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/anneal-probe-0.5b"))
}

/// A bf16 tensor of small random values, written from its bytes.
struct Bf16 {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Bf16 {
    fn dtype(&self) -> Dtype {
        Dtype::BF16
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn random(shape: &[usize], state: &mut u64, ones: bool) -> Bf16 {
    let len: usize = shape.iter().product();
    let mut bytes = Vec::with_capacity(len * 2);
    for _ in 0..len {
        let value = if ones {
            1.0f32
        } else {
            // xorshift64: values in ±0.02, as an initializer would draw them.
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            ((*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
        };
        bytes.extend_from_slice(&((value.to_bits() >> 16) as u16).to_le_bytes());
    }
    Bf16 {
        shape: shape.to_vec(),
        bytes,
    }
}

#[test]
#[ignore = "writes a 1 GB checkpoint; run by hand"]
fn write_checkpoint() {
    let dir = probe_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": HIDDEN, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "hidden_act": "silu",
        "bos_token_id": 0, "eos_token_id": 1
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut tensors: Vec<(String, Bf16)> = vec![(
        "model.embed_tokens.weight".into(),
        random(&[VOCAB, HIDDEN], &mut state, false),
    )];
    tensors.push((
        "model.norm.weight".into(),
        random(&[HIDDEN], &mut state, true),
    ));
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    for i in 0..LAYERS {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![q, HIDDEN]),
            ("self_attn.q_proj.bias", vec![q]),
            ("self_attn.k_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.k_proj.bias", vec![kv]),
            ("self_attn.v_proj.weight", vec![kv, HIDDEN]),
            ("self_attn.v_proj.bias", vec![kv]),
            ("self_attn.o_proj.weight", vec![HIDDEN, q]),
            ("mlp.gate_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.up_proj.weight", vec![FFN, HIDDEN]),
            ("mlp.down_proj.weight", vec![HIDDEN, FFN]),
        ] {
            tensors.push((format!("{p}.{name}"), random(&shape, &mut state, false)));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((
                format!("{p}.{norm}.weight"),
                random(&[HIDDEN], &mut state, true),
            ));
        }
    }
    let params: usize = tensors.iter().map(|(_, t)| t.bytes.len() / 2).sum();
    safetensors::serialize_to_file(
        tensors.iter().map(|(n, t)| (n.clone(), t)),
        None,
        &dir.join("model.safetensors"),
    )
    .unwrap();
    println!("wrote {params} parameters to {}", dir.display());
}

/// `VmHWM`, `RssAnon` and `RssFile` of this process, in MiB.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "peak {} / anon {} / file {}",
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:")
    )
}

#[test]
#[ignore = "needs write_checkpoint first; run by hand"]
fn load_checkpoint() {
    let dtype = match std::env::var("ANNEAL_PROBE_DTYPE").as_deref() {
        Ok("bf16") => DType::BF16,
        _ => DType::F32,
    };
    println!("before: {}", memory());
    let start = Instant::now();
    let (_, model) = load_model::<CpuBackend>(&probe_dir(), &Default::default(), dtype).unwrap();
    let took = start.elapsed();
    println!("{dtype:?}: loaded in {took:.2?}; {}", memory());
    drop(model);
}
