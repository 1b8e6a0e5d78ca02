//! The reference model of DPO: the base model the job started from. LoRA needs no
//! copy of it: the trained model with its adapters switched off is the base, and a
//! module clone shares the base tensors (burn tensors are reference counted). Full
//! training keeps the initial weights aside; an optimizer step makes new tensors
//! for what it updates, so the kept clone stays the initial model.

use anneal_crds::finetunejob::TrainingType;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::CausalLm;
use anneal_model::lora::projections_mut;

pub enum Reference<B: AutodiffBackend> {
    /// LoRA: the trained model without its adapters.
    AdapterOff,
    /// Full training: the weights before the first step, without gradients.
    Frozen(Box<CausalLm<B::InnerBackend>>),
}

impl<B: AutodiffBackend> Reference<B> {
    /// The reference for a run whose initial (untrained) model is `base`.
    pub fn for_training(training: TrainingType, base: &CausalLm<B>) -> Self {
        match training {
            TrainingType::Lora => Reference::AdapterOff,
            TrainingType::Full => Reference::Frozen(Box::new(base.valid())),
        }
    }

    /// The reference as an inference model (no gradients, no dropout) beside `policy`.
    pub fn model(&self, policy: &CausalLm<B>) -> CausalLm<B::InnerBackend> {
        match self {
            Reference::AdapterOff => without_adapters(policy.valid()),
            Reference::Frozen(model) => model.as_ref().clone(),
        }
    }
}

/// `model` with every LoRA adapter removed: the base model's function.
pub fn without_adapters<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, _, projection) in projections_mut(&mut model) {
        projection.lora = None;
    }
    model
}
