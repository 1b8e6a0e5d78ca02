//! The optimizer every objective steps with: AdamW over whatever has gradients,
//! the adapter in LoRA training (the frozen base has no gradient and so no
//! optimizer state), every weight in full training; for chat models and the FLUX
//! transformer of image jobs alike.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::CausalLm;

/// AdamW over the parameters of module `M`.
pub type AdamWFor<M, B> = OptimizerAdaptor<AdamW, M, B>;
pub type SftOptimizer<B> = AdamWFor<CausalLm<B>, B>;

/// AdamW as PyTorch defaults it (eps 1e-8), with the job's weight decay.
pub fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(weight_decay: f64) -> AdamWFor<M, B> {
    AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .init()
}
