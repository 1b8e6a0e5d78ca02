//! What a `config.json` may say and still describe a model: positive, finite norm
//! epsilon and RoPE base, and sizes within generous bounds of every published
//! decoder. A file outside them (a typo, a corrupted or hostile upload) would
//! otherwise train to NaN and "succeed", or ask for a terabyte before any check.

use super::config::{ConfigError, ModelConfig};

/// The largest size accepted for each field: several times the largest of the
/// published decoders (Llama 3.1 405B: hidden 16,384, 126 layers, FFN 53,248, 128
/// heads; Qwen2.5: vocabulary 152,064, 131,072 positions).
const MAX_HIDDEN: usize = 131_072;
const MAX_INTERMEDIATE: usize = 1_048_576;
const MAX_LAYERS: usize = 1_024;
const MAX_HEADS: usize = 1_024;
const MAX_HEAD_DIM: usize = 1_024;
const MAX_VOCAB: usize = 16_777_216;
const MAX_POSITIONS: usize = 16_777_216;

/// Checks every bounded field of `config`; the first one out of bounds is the error.
pub(super) fn check_bounds(config: &ModelConfig) -> Result<(), ConfigError> {
    let sizes = [
        ("hidden_size", config.hidden_size, MAX_HIDDEN),
        (
            "intermediate_size",
            config.intermediate_size,
            MAX_INTERMEDIATE,
        ),
        ("num_hidden_layers", config.num_layers, MAX_LAYERS),
        ("num_attention_heads", config.num_heads, MAX_HEADS),
        ("head_dim", config.head_dim, MAX_HEAD_DIM),
        ("vocab_size", config.vocab_size, MAX_VOCAB),
        (
            "max_position_embeddings",
            config.max_position_embeddings,
            MAX_POSITIONS,
        ),
    ];
    for (field, value, max) in sizes {
        if value == 0 || value > max {
            return Err(ConfigError::OutOfRange {
                field,
                value: value.to_string(),
                expected: format!("between 1 and {max}"),
            });
        }
    }
    positive("rms_norm_eps", config.rms_norm_eps)?;
    positive("rope_theta", config.rope_theta)?;
    if let Some(scaling) = &config.rope_scaling {
        positive("rope_scaling.factor", scaling.factor)?;
        positive("rope_scaling.low_freq_factor", scaling.low_freq_factor)?;
        positive("rope_scaling.high_freq_factor", scaling.high_freq_factor)?;
        positive(
            "rope_scaling.original_max_position_embeddings",
            scaling.original_max_position_embeddings,
        )?;
        // llama3 scaling divides by (high - low); equal factors would divide by zero.
        if scaling.high_freq_factor <= scaling.low_freq_factor {
            return Err(ConfigError::OutOfRange {
                field: "rope_scaling.high_freq_factor",
                value: scaling.high_freq_factor.to_string(),
                expected: format!(
                    "above rope_scaling.low_freq_factor ({})",
                    scaling.low_freq_factor
                ),
            });
        }
    }
    Ok(())
}

fn positive(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value: value.to_string(),
            expected: "a finite number above 0".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-0.5B's config.json with `field` replaced by `value` (JSON text).
    fn qwen_with(field: &str, value: &str) -> Result<ModelConfig, ConfigError> {
        let mut config: serde_json::Value = serde_json::from_str(
            r#"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 1000000.0,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": true, "max_position_embeddings": 32768}"#,
        )
        .unwrap();
        config[field] = serde_json::from_str(value).unwrap();
        ModelConfig::from_json(&config.to_string())
    }

    #[test]
    fn nonsense_values_are_refused_by_name() {
        let cases = [
            (
                "rms_norm_eps",
                "-1",
                "rms_norm_eps is -1: a finite number above 0",
            ),
            (
                "rms_norm_eps",
                "0",
                "rms_norm_eps is 0: a finite number above 0",
            ),
            (
                "rope_theta",
                "0",
                "rope_theta is 0: a finite number above 0",
            ),
            (
                "rope_theta",
                "-10000",
                "rope_theta is -10000: a finite number above 0",
            ),
            (
                "max_position_embeddings",
                "0",
                "max_position_embeddings is 0: between 1 and 16777216",
            ),
            (
                "max_position_embeddings",
                "1000000000000",
                "max_position_embeddings is 1000000000000: between 1 and 16777216",
            ),
            (
                "num_hidden_layers",
                "1000000000",
                "num_hidden_layers is 1000000000: between 1 and 1024",
            ),
            (
                "num_hidden_layers",
                "0",
                "num_hidden_layers is 0: between 1 and 1024",
            ),
            ("vocab_size", "0", "vocab_size is 0: between 1 and 16777216"),
            (
                "intermediate_size",
                "0",
                "intermediate_size is 0: between 1 and 1048576",
            ),
        ];
        for (field, value, message) in cases {
            let error = qwen_with(field, value).unwrap_err().to_string();
            assert_eq!(error, message, "{field} = {value}");
        }
    }

    #[test]
    fn real_configs_pass() {
        assert!(qwen_with("rms_norm_eps", "1e-5").is_ok());
        assert!(qwen_with("max_position_embeddings", "131072").is_ok());
        assert!(qwen_with("num_hidden_layers", "80").is_ok());
    }

    #[test]
    fn llama3_scaling_factors_must_be_ordered_and_positive() {
        let scaling = |low: f64, high: f64| {
            qwen_with(
                "rope_scaling",
                &format!(
                    r#"{{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": {low},
                    "high_freq_factor": {high}, "original_max_position_embeddings": 8192}}"#
                ),
            )
        };
        assert!(scaling(1.0, 4.0).is_ok());
        assert_eq!(
            scaling(4.0, 4.0).unwrap_err().to_string(),
            "rope_scaling.high_freq_factor is 4: above rope_scaling.low_freq_factor (4)"
        );
        assert_eq!(
            scaling(-1.0, 4.0).unwrap_err().to_string(),
            "rope_scaling.low_freq_factor is -1: a finite number above 0"
        );
    }
}
