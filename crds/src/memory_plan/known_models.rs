//! The shapes of the models users name, built in so that a plan needs no download:
//! each row is the model's Hugging Face `config.json` (base and `-Instruct` share it).

use super::inputs::WeightDtype;
use super::model_shape::ModelShape;

/// Qwen2.5 at a size: every Qwen2 has q/k/v biases and 128-wide heads except 0.5B's 64.
const fn qwen25(
    hidden_size: u64,
    layers: u64,
    attention_heads: u64,
    kv_heads: u64,
    intermediate_size: u64,
    vocab_size: u64,
    tied_embeddings: bool,
) -> ModelShape {
    ModelShape {
        hidden_size,
        layers,
        attention_heads,
        kv_heads,
        head_dim: hidden_size / attention_heads,
        intermediate_size,
        vocab_size,
        tied_embeddings,
        qkv_bias: true,
        stored_dtype: WeightDtype::Bf16,
    }
}

/// Every built-in shape, by the name users write in `spec.baseModel.name`.
pub const KNOWN_MODELS: [(&str, ModelShape); 8] = [
    (
        "Qwen/Qwen2.5-0.5B-Instruct",
        qwen25(896, 24, 14, 2, 4864, 151_936, true),
    ),
    (
        "Qwen/Qwen2.5-1.5B-Instruct",
        qwen25(1536, 28, 12, 2, 8960, 151_936, true),
    ),
    (
        "Qwen/Qwen2.5-3B-Instruct",
        qwen25(2048, 36, 16, 2, 11_008, 151_936, true),
    ),
    (
        "Qwen/Qwen2.5-7B-Instruct",
        qwen25(3584, 28, 28, 4, 18_944, 152_064, false),
    ),
    (
        "Qwen/Qwen2.5-14B-Instruct",
        qwen25(5120, 48, 40, 8, 13_824, 152_064, false),
    ),
    (
        "Qwen/Qwen2.5-32B-Instruct",
        qwen25(5120, 64, 40, 8, 27_648, 152_064, false),
    ),
    (
        "Qwen/Qwen2.5-72B-Instruct",
        qwen25(8192, 80, 64, 8, 29_568, 152_064, false),
    ),
    (
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        ModelShape {
            hidden_size: 4096,
            layers: 32,
            attention_heads: 32,
            kv_heads: 8,
            head_dim: 128,
            intermediate_size: 14_336,
            vocab_size: 128_256,
            tied_embeddings: false,
            qkv_bias: false,
            stored_dtype: WeightDtype::Bf16,
        },
    ),
];

/// The built-in shape for a model name, matched without regard to case, the
/// organization, an `-Instruct` suffix or Meta's older `Meta-` prefix, so
/// `Qwen/Qwen2.5-7B`, `qwen2.5-7b-instruct` and `meta-llama/Llama-3.1-8B-Instruct`
/// all find their row.
pub fn known_shape(name: &str) -> Option<ModelShape> {
    let wanted = canonical(name);
    KNOWN_MODELS
        .iter()
        .find(|(known, _)| canonical(known) == wanted)
        .map(|(_, shape)| *shape)
}

fn canonical(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let base = base.strip_suffix("-instruct").unwrap_or(&base);
    base.strip_prefix("meta-").unwrap_or(base).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_the_spellings_users_write() {
        let seven = known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap();
        assert_eq!(
            (
                seven.hidden_size,
                seven.layers,
                seven.attention_heads,
                seven.kv_heads
            ),
            (3584, 28, 28, 4)
        );
        for name in [
            "Qwen/Qwen2.5-7B",
            "qwen2.5-7b-instruct",
            "Qwen2.5-7B-Instruct",
        ] {
            assert_eq!(known_shape(name), Some(seven), "{name}");
        }
        let llama = known_shape("meta-llama/Llama-3.1-8B-Instruct").unwrap();
        assert_eq!((llama.vocab_size, llama.qkv_bias), (128_256, false));
        assert_eq!(known_shape("anneal-tiny"), None);
        assert_eq!(known_shape("Qwen/Qwen2.5-7B-Coder"), None);
    }

    #[test]
    fn every_row_has_consistent_heads() {
        for (name, shape) in KNOWN_MODELS {
            assert_eq!(shape.attention_heads % shape.kv_heads, 0, "{name}");
            assert_eq!(shape.query_width(), shape.hidden_size, "{name}");
        }
    }
}
