//! The shape of a decoder-only model (Qwen2 / Qwen2.5, Llama 3 / 3.1) as far as memory
//! is concerned: the sizes of its linear layers, norms and embeddings, and the parameter
//! counts that follow from them.

use super::inputs::WeightDtype;
use crate::hyperparameters::TargetModule;

/// What the memory plan needs to know about a model's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelShape {
    pub hidden_size: u64,
    pub layers: u64,
    pub attention_heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// Width of the MLP (SwiGLU's gate and up projections).
    pub intermediate_size: u64,
    pub vocab_size: u64,
    /// The output head reuses the embedding matrix (Qwen2.5 up to 3B).
    pub tied_embeddings: bool,
    /// Bias vectors on the q, k and v projections (every Qwen2).
    pub qkv_bias: bool,
    /// The dtype the checkpoint stores its weights in (`torch_dtype`): what a frozen
    /// base's layers are held in on the CPU with recomputation. Qwen2.5 and Llama 3.1
    /// ship bf16.
    pub stored_dtype: WeightDtype,
}

/// One linear layer of a decoder layer: `inputs x outputs` weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    pub module: TargetModule,
    pub inputs: u64,
    pub outputs: u64,
}

impl ModelShape {
    /// Width of all query heads together.
    pub fn query_width(&self) -> u64 {
        self.attention_heads * self.head_dim
    }

    /// Width of all key (or value) heads together; smaller than the queries' with
    /// grouped-query attention.
    pub fn kv_width(&self) -> u64 {
        self.kv_heads * self.head_dim
    }

    /// The seven projections of one decoder layer, in Hugging Face order.
    pub fn linears(&self) -> [Linear; 7] {
        let (h, q, kv, f) = (
            self.hidden_size,
            self.query_width(),
            self.kv_width(),
            self.intermediate_size,
        );
        let linear = |module, inputs, outputs| Linear {
            module,
            inputs,
            outputs,
        };
        [
            linear(TargetModule::QProj, h, q),
            linear(TargetModule::KProj, h, kv),
            linear(TargetModule::VProj, h, kv),
            linear(TargetModule::OProj, q, h),
            linear(TargetModule::GateProj, h, f),
            linear(TargetModule::UpProj, h, f),
            linear(TargetModule::DownProj, f, h),
        ]
    }

    /// Parameters of one decoder layer: the seven projections' weights, the q/k/v
    /// biases where the family has them, and two RMSNorm scales of `hidden` each.
    pub fn layer_params(&self) -> u64 {
        let weights: u64 = self.linears().iter().map(|l| l.inputs * l.outputs).sum();
        let biases = if self.qkv_bias {
            self.query_width() + 2 * self.kv_width()
        } else {
            0
        };
        weights + biases + 2 * self.hidden_size
    }

    /// Parameters outside the decoder layers: the `[vocab, hidden]` embedding, the
    /// output head (another `[vocab, hidden]` unless tied) and the final norm.
    pub fn outside_layer_params(&self) -> u64 {
        let matrices = if self.tied_embeddings { 1 } else { 2 };
        matrices * self.vocab_size * self.hidden_size + self.hidden_size
    }

    /// Every parameter of the model.
    pub fn params(&self) -> u64 {
        self.layers * self.layer_params() + self.outside_layer_params()
    }

    /// LoRA parameters of one layer: an adapter on an `inputs x outputs` projection is
    /// `A: [rank, inputs]` and `B: [outputs, rank]`, so `rank * (inputs + outputs)`.
    pub fn lora_params_per_layer(&self, rank: u64, targets: &[TargetModule]) -> u64 {
        self.linears()
            .iter()
            .filter(|l| targets.contains(&l.module))
            .map(|l| rank * (l.inputs + l.outputs))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_plan::known_models::known_shape;

    #[test]
    fn parameter_counts_match_the_published_model_sizes() {
        // The model cards: Qwen2.5-7B 7.61B, 72B 72.7B, 0.5B 0.49B, Llama-3.1-8B 8.03B.
        let cases = [
            ("Qwen/Qwen2.5-0.5B-Instruct", 494_032_768),
            ("Qwen/Qwen2.5-7B-Instruct", 7_615_616_512),
            ("Qwen/Qwen2.5-72B-Instruct", 72_706_203_648),
            ("meta-llama/Meta-Llama-3.1-8B-Instruct", 8_030_261_248),
        ];
        for (name, params) in cases {
            assert_eq!(known_shape(name).unwrap().params(), params, "{name}");
        }
    }

    #[test]
    fn a_qwen_7b_layer_adds_up_by_hand() {
        let shape = known_shape("Qwen/Qwen2.5-7B-Instruct").unwrap();
        // q and o: 3584 x 3584 = 12,845,056 each; k and v: 3584 x 512 = 1,835,008 each;
        // gate, up and down: 3584 x 18944 = 67,895,296 each; biases 3584 + 2 x 512;
        // norms 2 x 3584.
        let by_hand = 2 * 12_845_056 + 2 * 1_835_008 + 3 * 67_895_296 + (3584 + 1024) + 2 * 3584;
        assert_eq!(shape.layer_params(), by_hand);
        // r8 on all seven: 8 x ((3584+3584) x 2 + (3584+512) x 2 + (3584+18944) x 3).
        assert_eq!(shape.lora_params_per_layer(8, &TargetModule::ALL), 720_896);
        assert_eq!(
            shape.lora_params_per_layer(8, &[TargetModule::QProj, TargetModule::VProj]),
            8 * (3584 + 3584) + 8 * (3584 + 512)
        );
    }
}
