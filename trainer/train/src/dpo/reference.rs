//! The reference model of DPO: the model the job started from. LoRA needs no copy
//! of it: the trained model with its adapters switched off is the base, and a
//! module clone shares the base tensors (burn tensors are reference counted). Full
//! training, and LoRA training another job's adapter further (DPO after SFT: the
//! reference is the SFT model), keep the initial model aside; an optimizer step makes
//! new tensors for what it updates, so the kept clone stays the initial model, and
//! with LoRA it shares the frozen base and holds only the adapter's own copy.

use anneal_crds::finetunejob::TrainingType;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use anneal_model::llm::CausalLm;
use anneal_model::lora::{projections, projections_mut};

pub enum Reference<B: AutodiffBackend> {
    /// LoRA: the trained model without its adapters.
    AdapterOff,
    /// Full training, or a continued adapter: the model before the first step,
    /// without gradients.
    Frozen(Box<CausalLm<B::InnerBackend>>),
}

impl<B: AutodiffBackend> Reference<B> {
    /// The reference for a run whose initial (untrained) model is `base`;
    /// `continued`: `base` carries the adapter the run trains further.
    pub fn for_training(training: TrainingType, continued: bool, base: &CausalLm<B>) -> Self {
        match (training, continued) {
            (TrainingType::Lora, false) => Reference::AdapterOff,
            _ => Reference::Frozen(Box::new(base.valid())),
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

impl<B: AutodiffBackend> Reference<B> {
    /// The same reference beside `replica`, a copy of the trained model on another
    /// device ([`crate::data_parallel`]). A kept LoRA reference shares the replica's
    /// frozen base and moves only its adapters; a full-training reference is moved
    /// whole, once.
    pub fn for_replica(&self, replica: &CausalLm<B>) -> Self {
        let Reference::Frozen(kept) = self else {
            return Reference::AdapterOff;
        };
        let device = replica.devices()[0].clone();
        let adapted = projections(kept).iter().any(|(_, _, p)| p.lora.is_some());
        if !adapted {
            return Reference::Frozen(Box::new(kept.as_ref().clone().to_device(&device)));
        }
        let mut model = replica.valid();
        for ((_, _, onto), (_, _, from)) in projections_mut(&mut model)
            .into_iter()
            .zip(projections(kept))
        {
            onto.lora = (from.lora.clone()).map(|lora| lora.to_device(&device));
        }
        Reference::Frozen(Box::new(model))
    }
}

/// `model` with every LoRA adapter removed: the base model's function.
pub fn without_adapters<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, _, projection) in projections_mut(&mut model) {
        projection.lora = None;
    }
    model
}
