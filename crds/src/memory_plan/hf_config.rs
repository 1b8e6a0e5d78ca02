//! A model's shape from its Hugging Face `config.json`, the keys Qwen2 and Llama
//! checkpoints write (transformers 4.x and 5.x alike); other keys are ignored.

use serde::Deserialize;

use super::inputs::WeightDtype;
use super::model_shape::ModelShape;

/// The keys of `config.json` the plan reads.
#[derive(Deserialize, Debug)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: u64,
    num_hidden_layers: u64,
    num_attention_heads: u64,
    /// Absent in configs without grouped-query attention: as many as the query heads.
    num_key_value_heads: Option<u64>,
    /// Absent where it is `hidden_size / num_attention_heads`.
    head_dim: Option<u64>,
    intermediate_size: u64,
    vocab_size: u64,
    #[serde(default)]
    tie_word_embeddings: bool,
    /// Llama's switch for q/k/v/o biases; Qwen2 always has q/k/v biases.
    attention_bias: Option<bool>,
    /// The weights' dtype: `torch_dtype` up to transformers 4.x, `dtype` in 5.x.
    torch_dtype: Option<String>,
    dtype: Option<String>,
}

/// Why a `config.json` gives no shape.
#[derive(Debug, thiserror::Error)]
pub enum HfConfigError {
    #[error("config.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("config.json: {0}")]
    Shape(String),
}

impl ModelShape {
    /// Parses the text of a `config.json`.
    pub fn from_config_json(text: &str) -> Result<ModelShape, HfConfigError> {
        let raw: HfConfig = serde_json::from_str(text)?;
        let shape_error = |message: String| Err(HfConfigError::Shape(message));
        if raw.num_attention_heads == 0 || raw.hidden_size == 0 || raw.num_hidden_layers == 0 {
            return shape_error(
                "hidden_size, num_hidden_layers and num_attention_heads must be above 0".into(),
            );
        }
        let kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(kv_heads) {
            return shape_error(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {kv_heads}",
                raw.num_attention_heads
            ));
        }
        let is_qwen2 = raw.model_type.as_deref() == Some("qwen2")
            || raw.architectures.iter().any(|a| a == "Qwen2ForCausalLM");
        Ok(ModelShape {
            hidden_size: raw.hidden_size,
            layers: raw.num_hidden_layers,
            attention_heads: raw.num_attention_heads,
            kv_heads,
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            intermediate_size: raw.intermediate_size,
            vocab_size: raw.vocab_size,
            tied_embeddings: raw.tie_word_embeddings,
            qkv_bias: is_qwen2 || raw.attention_bias.unwrap_or(false),
            // Unsaid, or a dtype the trainer does not store narrower: as bf16, as the
            // built-in shapes.
            stored_dtype: match raw.dtype.or(raw.torch_dtype).as_deref() {
                Some("float32") => WeightDtype::F32,
                Some("float16") => WeightDtype::F16,
                _ => WeightDtype::Bf16,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_plan::known_models::known_shape;

    #[test]
    fn qwen_and_llama_configs_give_the_built_in_shapes() {
        let qwen = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584,
            "intermediate_size": 18944, "model_type": "qwen2", "num_attention_heads": 28,
            "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
            "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 152064}"#;
        assert_eq!(
            ModelShape::from_config_json(qwen).unwrap(),
            known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap()
        );
        let llama = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false,
            "head_dim": 128, "hidden_size": 4096, "intermediate_size": 14336,
            "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
            "vocab_size": 128256}"#;
        assert_eq!(
            ModelShape::from_config_json(llama).unwrap(),
            known_shape("meta-llama/Meta-Llama-3.1-8B-Instruct").unwrap()
        );
    }

    #[test]
    fn the_bundled_tiny_model_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/models/anneal-tiny/config.json"
        ))
        .unwrap();
        let shape = ModelShape::from_config_json(&text).unwrap();
        assert_eq!(
            (
                shape.hidden_size,
                shape.layers,
                shape.kv_heads,
                shape.head_dim
            ),
            (128, 4, 2, 32)
        );
        assert!(shape.tied_embeddings && shape.qkv_bias);
    }

    #[test]
    fn broken_configs_say_what_is_wrong() {
        let missing = ModelShape::from_config_json(r#"{"hidden_size": 8}"#).unwrap_err();
        assert!(missing.to_string().contains("missing field"), "{missing}");
        let heads = ModelShape::from_config_json(
            r#"{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 3, "intermediate_size": 128, "vocab_size": 10}"#,
        )
        .unwrap_err();
        assert_eq!(
            heads.to_string(),
            "config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3"
        );
    }
}
