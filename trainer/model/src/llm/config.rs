//! The architecture of a Hugging Face model folder, read from its `config.json`
//! as transformers 4.x writes it (`rope_theta`, `rope_scaling` at the top level)
//! or as 5.x does (`rope_parameters`).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::ModelError;

/// Decoder families the model code covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Qwen2 / Qwen2.5: q/k/v bias, tied or untied embeddings.
    Qwen2,
    /// Llama 3 / 3.1: no bias, optional `llama3` RoPE scaling.
    Llama,
}

/// RoPE frequency scaling of Llama 3.1 (`rope_type: llama3`).
#[derive(Clone, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Everything the forward pass needs to know about the architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: String,
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub max_position_embeddings: usize,
}

/// Why a `config.json` describes no model this code can build.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("\"architectures\" is missing or empty")]
    NoArchitecture,
    #[error(
        "architecture {0:?} is not supported; supported: Qwen2ForCausalLM (Qwen2, Qwen2.5) and LlamaForCausalLM (Llama 3, 3.1)"
    )]
    UnsupportedArchitecture(String),
    /// A setting (`use_sliding_window`, `mlp_bias`) turned on that the model code lacks.
    #[error("{0}: true is not supported")]
    UnsupportedSetting(&'static str),
    #[error("hidden_size {hidden_size} is not divisible by num_attention_heads {heads}")]
    HeadsDoNotDivideHidden { hidden_size: usize, heads: usize },
    #[error("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")]
    KvHeadsDoNotDivideHeads { heads: usize, kv_heads: usize },
    #[error("llama3 rope scaling needs a number {0:?}")]
    RopeScalingField(String),
    #[error("rope type {0:?} is not supported (supported: default, llama3)")]
    UnsupportedRopeType(String),
    /// A number no model has: a size of 0 or far beyond any published decoder, a
    /// norm epsilon or RoPE base that is not a positive number.
    #[error("{field} is {value}: {expected}")]
    OutOfRange {
        field: &'static str,
        value: String,
        expected: String,
    },
}

/// The fields of config.json this code reads; the rest is ignored.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default)]
    use_sliding_window: bool,
    max_position_embeddings: Option<usize>,
}

impl ModelConfig {
    /// Reads `config.json` from a model folder.
    pub fn from_model_dir(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        Self::from_json(&text).map_err(|source| ModelError::Config { path, source })
    }

    /// Parses the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)?;
        let architecture = raw
            .architectures
            .first()
            .cloned()
            .ok_or(ConfigError::NoArchitecture)?;
        let family = match architecture.as_str() {
            "Qwen2ForCausalLM" => Family::Qwen2,
            "LlamaForCausalLM" => Family::Llama,
            _ => return Err(ConfigError::UnsupportedArchitecture(architecture)),
        };
        if raw.use_sliding_window {
            return Err(ConfigError::UnsupportedSetting("use_sliding_window"));
        }
        if raw.mlp_bias {
            return Err(ConfigError::UnsupportedSetting("mlp_bias"));
        }
        let heads_divide_hidden = raw.num_attention_heads != 0
            && (raw.head_dim.is_some() || raw.hidden_size.is_multiple_of(raw.num_attention_heads));
        if !heads_divide_hidden {
            return Err(ConfigError::HeadsDoNotDivideHidden {
                hidden_size: raw.hidden_size,
                heads: raw.num_attention_heads,
            });
        }
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        if num_kv_heads == 0 || !raw.num_attention_heads.is_multiple_of(num_kv_heads) {
            return Err(ConfigError::KvHeadsDoNotDivideHeads {
                heads: raw.num_attention_heads,
                kv_heads: num_kv_heads,
            });
        }
        let (rope_theta, rope_scaling) = rope(&raw)?;
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let config = ModelConfig {
            family,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads: raw.num_attention_heads,
            num_kv_heads,
            head_dim: raw
                .head_dim
                .unwrap_or(raw.hidden_size / raw.num_attention_heads),
            vocab_size: raw.vocab_size,
            rope_theta,
            rope_scaling,
            rms_norm_eps: raw.rms_norm_eps,
            tie_word_embeddings: raw.tie_word_embeddings,
            qkv_bias: family == Family::Qwen2 || attention_bias,
            o_bias: family == Family::Llama && attention_bias,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            architecture,
        };
        super::config_bounds::check_bounds(&config)?;
        Ok(config)
    }
}

/// RoPE base and scaling from either layout. transformers 5.x keeps both in
/// `rope_parameters`; 4.x has `rope_theta` and `rope_scaling` at the top level.
fn rope(raw: &RawConfig) -> Result<(f64, Option<Llama3RopeScaling>), ConfigError> {
    let params = raw.rope_parameters.as_ref().filter(|v| !v.is_null());
    let theta = raw
        .rope_theta
        .or_else(|| {
            params
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(10_000.0);
    let scaling = raw
        .rope_scaling
        .as_ref()
        .filter(|v| !v.is_null())
        .or(params);
    let Some(scaling) = scaling else {
        return Ok((theta, None));
    };
    let rope_type = scaling
        .get("rope_type")
        .or_else(|| scaling.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match rope_type {
        "default" => Ok((theta, None)),
        "llama3" => {
            let field = |name: &str| {
                scaling
                    .get(name)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ConfigError::RopeScalingField(name.to_owned()))
            };
            Ok((
                theta,
                Some(Llama3RopeScaling {
                    factor: field("factor")?,
                    low_freq_factor: field("low_freq_factor")?,
                    high_freq_factor: field("high_freq_factor")?,
                    original_max_position_embeddings: field("original_max_position_embeddings")?,
                }),
            ))
        }
        other => Err(ConfigError::UnsupportedRopeType(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN_4X: &str = r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
        "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "use_sliding_window": false,
        "sliding_window": 131072, "max_position_embeddings": 32768, "rope_scaling": null}"#;

    const LLAMA_5X: &str = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-5,
        "attention_bias": false, "mlp_bias": false, "max_position_embeddings": 131072,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;

    #[test]
    fn qwen_in_the_4x_layout() {
        let c = ModelConfig::from_json(QWEN_4X).unwrap();
        assert_eq!(c.family, Family::Qwen2);
        assert_eq!((c.head_dim, c.num_kv_heads, c.rope_theta), (64, 2, 1e6));
        assert!(c.qkv_bias && !c.o_bias && c.tie_word_embeddings);
        assert_eq!(c.rope_scaling, None);
    }

    #[test]
    fn llama_in_the_5x_layout() {
        let c = ModelConfig::from_json(LLAMA_5X).unwrap();
        assert_eq!(c.family, Family::Llama);
        assert_eq!(c.rope_theta, 5e5);
        assert_eq!(
            c.rope_scaling,
            Some(Llama3RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0
            })
        );
        assert!(!c.qkv_bias && !c.o_bias && !c.tie_word_embeddings);
    }

    #[test]
    fn unknown_architectures_and_rope_types_are_named() {
        let mistral = QWEN_4X.replace("Qwen2ForCausalLM", "MistralForCausalLM");
        let err = ModelConfig::from_json(&mistral).unwrap_err().to_string();
        assert!(
            err.starts_with("architecture \"MistralForCausalLM\" is not supported"),
            "{err}"
        );
        let yarn = LLAMA_5X.replace("\"llama3\"", "\"yarn\"");
        assert_eq!(
            ModelConfig::from_json(&yarn).unwrap_err().to_string(),
            "rope type \"yarn\" is not supported (supported: default, llama3)"
        );
    }
}
