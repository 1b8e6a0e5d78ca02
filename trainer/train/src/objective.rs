//! What a run optimises, `spec.method`: SFT's masked cross-entropy or DPO's
//! preference loss. The loop in [`super::run`] (schedule, checkpoints, events,
//! resume) is the same for both; an objective reads its data, takes a step and
//! evaluates, and says which numbers it has for the metrics event.

use std::io::Read;

use anneal_crds::ResolvedHyperparameters;
use anneal_crds::finetunejob::{Metrics, TrainingType};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;

use super::backward::LayerActivations;
use super::data::DataError;
use super::optimizer::SftOptimizer;
use super::step_settings::StepSettings;
use super::tensor_batch::Batch;
use super::tokenized::{DataItem, TokenizedSample};
use crate::data_parallel::Replicas;
use crate::dpo::data::{PreferencePair, prepare_pairs};
use crate::dpo::evaluate::evaluate_pairs;
use crate::dpo::loss::{DpoConfig, PairBatch, PreferenceScores};
use crate::dpo::reference::Reference;
use crate::dpo::step::DpoStep;
use crate::sft::data::prepare;
use crate::sft::evaluate::evaluate;
use crate::sft::step::sft_step_on;
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::CausalLm;

/// Gradients are clipped to this global norm, as Hugging Face's Trainer does by default.
pub const MAX_GRAD_NORM: f64 = 1.0;

/// One dataset file read for training.
pub struct Prepared<T> {
    pub items: Vec<T>,
    /// Over maxTokens, dropped, never truncated.
    pub dropped_too_long: u64,
    /// Nothing to train on once tokenized.
    pub dropped_untrainable: u64,
}

/// The numbers a step or an evaluation gives: the loss always, then what the
/// method has (token accuracy for SFT, rewards for DPO).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub loss: f64,
    pub token_accuracy: Option<f64>,
    pub preferences: Option<PreferenceScores>,
}

impl Scores {
    /// Sets the training fields of `metrics`.
    pub fn write_train(&self, metrics: &mut Metrics) {
        metrics.train_loss = Some(self.loss);
        if let Some(p) = &self.preferences {
            metrics.rewards_chosen = Some(p.rewards_chosen);
            metrics.rewards_rejected = Some(p.rewards_rejected);
            metrics.reward_margin = Some(p.reward_margin);
            metrics.reward_accuracy = Some(p.reward_accuracy);
        }
    }

    /// Sets the validation fields of `metrics`.
    pub fn write_valid(&self, metrics: &mut Metrics) {
        metrics.valid_loss = Some(self.loss);
        metrics.token_accuracy = self.token_accuracy;
        if let Some(p) = &self.preferences {
            metrics.valid_rewards_chosen = Some(p.rewards_chosen);
            metrics.valid_rewards_rejected = Some(p.rewards_rejected);
            metrics.valid_reward_margin = Some(p.reward_margin);
            metrics.valid_reward_accuracy = Some(p.reward_accuracy);
        }
    }
}

/// A step's scores and its gradient norm before clipping.
pub struct StepReport {
    pub scores: Scores,
    pub grad_norm: f64,
}

pub trait Objective<B: AutodiffBackend> {
    /// One training example: a conversation for SFT, a preference pair for DPO.
    type Item: DataItem;

    /// Reads one dataset file as it goes; any invalid line fails it.
    fn read(
        &self,
        reader: &mut dyn Read,
        tokenizer: &ModelTokenizer,
        max_tokens: usize,
    ) -> Result<Prepared<Self::Item>, DataError>;

    /// Whatever the objective keeps beside the model, made again for `replicas`
    /// (copies of `model` on other devices): nothing for SFT, DPO's reference.
    fn replicate(&mut self, _model: &CausalLm<B>, _replicas: &Replicas<B>) {}

    /// One optimizer step over the step's micro-batches, each a list of rows of
    /// items: one item a row, or several when the run packs them. The micro-batches
    /// run on `replicas` as [`Replicas::assign`] says, which hold the updated weights
    /// after it.
    fn step(
        &self,
        model: CausalLm<B>,
        optimizer: &mut SftOptimizer<B>,
        micro_batches: &[Vec<Vec<&Self::Item>>],
        learning_rate: f64,
        replicas: &mut Replicas<B>,
    ) -> (CausalLm<B>, StepReport);

    /// Scores the training model (without dropout) on `items`; `None` when empty.
    fn evaluate(
        &self,
        model: &CausalLm<B>,
        items: &[Self::Item],
        batch_size: usize,
    ) -> Option<Scores>;
}

/// Supervised fine-tuning.
pub struct Sft {
    /// Kept or recomputed in the backward pass (`gradientCheckpointing`).
    pub activations: LayerActivations,
    /// `dataset.packing`: several chats share a row.
    pub packing: bool,
}

impl Sft {
    pub fn new(h: &ResolvedHyperparameters, packing: bool) -> Self {
        Self {
            activations: LayerActivations::from_checkpointing(h.gradient_checkpointing),
            packing,
        }
    }
}

impl<B: AutodiffBackend> Objective<B> for Sft {
    type Item = TokenizedSample;

    fn read(
        &self,
        reader: &mut dyn Read,
        tokenizer: &ModelTokenizer,
        max_tokens: usize,
    ) -> Result<Prepared<TokenizedSample>, DataError> {
        let prepared = prepare(reader, tokenizer, max_tokens)?;
        Ok(Prepared {
            items: prepared.samples,
            dropped_too_long: prepared.dropped_too_long,
            dropped_untrainable: prepared.dropped_untrainable,
        })
    }

    fn step(
        &self,
        model: CausalLm<B>,
        optimizer: &mut SftOptimizer<B>,
        micro_batches: &[Vec<Vec<&TokenizedSample>>],
        learning_rate: f64,
        replicas: &mut Replicas<B>,
    ) -> (CausalLm<B>, StepReport) {
        let assigned = replicas.assign(micro_batches.len());
        let batches: Vec<Batch<B>> = (micro_batches.iter().zip(assigned))
            .map(|(rows, replica)| {
                let device = replicas.device(replica);
                match self.packing {
                    true => Batch::packed(rows, device),
                    false => Batch::new(&rows.concat(), device),
                }
            })
            .collect();
        let settings = StepSettings {
            learning_rate,
            max_grad_norm: MAX_GRAD_NORM,
            activations: self.activations,
        };
        let (model, stats) = sft_step_on(model, optimizer, &batches, settings, replicas);
        let scores = Scores {
            loss: stats.loss,
            token_accuracy: Some(stats.accuracy),
            preferences: None,
        };
        let report = StepReport {
            scores,
            grad_norm: stats.grad_norm,
        };
        (model, report)
    }

    fn evaluate(
        &self,
        model: &CausalLm<B>,
        items: &[TokenizedSample],
        batch_size: usize,
    ) -> Option<Scores> {
        evaluate(&model.valid(), items, batch_size).map(|e| Scores {
            loss: e.loss,
            token_accuracy: Some(e.token_accuracy),
            preferences: None,
        })
    }
}

/// Direct preference optimisation against the job's base model.
pub struct Dpo<B: AutodiffBackend> {
    pub config: DpoConfig,
    /// The reference beside each replica of the model, the trained model's first.
    pub references: Vec<Reference<B>>,
    /// Kept or recomputed in the backward pass (`gradientCheckpointing`).
    pub activations: LayerActivations,
}

impl<B: AutodiffBackend> Dpo<B> {
    /// The objective for a run whose untrained model is `base` (before any resume);
    /// `continued`: `base` carries another job's adapter, which the run trains further.
    pub fn new(
        h: &ResolvedHyperparameters,
        training: TrainingType,
        continued: bool,
        base: &CausalLm<B>,
    ) -> Self {
        Self {
            config: DpoConfig::new()
                .with_beta(h.dpo_beta)
                .with_label_smoothing(h.dpo_label_smoothing)
                .with_sft_weight(h.dpo_sft_weight),
            references: vec![Reference::for_training(training, continued, base)],
            activations: LayerActivations::from_checkpointing(h.gradient_checkpointing),
        }
    }
}

impl<B: AutodiffBackend> Objective<B> for Dpo<B> {
    type Item = PreferencePair;

    fn read(
        &self,
        reader: &mut dyn Read,
        tokenizer: &ModelTokenizer,
        max_tokens: usize,
    ) -> Result<Prepared<PreferencePair>, DataError> {
        let prepared = prepare_pairs(reader, tokenizer, max_tokens)?;
        Ok(Prepared {
            items: prepared.pairs,
            dropped_too_long: prepared.dropped_too_long,
            dropped_untrainable: prepared.dropped_untrainable,
        })
    }

    fn replicate(&mut self, model: &CausalLm<B>, replicas: &Replicas<B>) {
        self.references.truncate(1);
        for replica in 1..replicas.len() {
            let beside = self.references[0].for_replica(replicas.model(model, replica));
            self.references.push(beside);
        }
    }

    fn step(
        &self,
        model: CausalLm<B>,
        optimizer: &mut SftOptimizer<B>,
        micro_batches: &[Vec<Vec<&PreferencePair>>],
        learning_rate: f64,
        replicas: &mut Replicas<B>,
    ) -> (CausalLm<B>, StepReport) {
        let assigned = replicas.assign(micro_batches.len());
        let batches: Vec<PairBatch<B>> = (micro_batches.iter().zip(assigned))
            .map(|(rows, replica)| PairBatch::new(&rows.concat(), replicas.device(replica)))
            .collect();
        let step = DpoStep {
            config: &self.config,
            settings: StepSettings {
                learning_rate,
                max_grad_norm: MAX_GRAD_NORM,
                activations: self.activations,
            },
        };
        let (model, stats) = step.run(model, &self.references, optimizer, &batches, replicas);
        let scores = Scores {
            loss: stats.scores.loss,
            token_accuracy: None,
            preferences: Some(stats.scores),
        };
        let report = StepReport {
            scores,
            grad_norm: stats.grad_norm,
        };
        (model, report)
    }

    fn evaluate(
        &self,
        model: &CausalLm<B>,
        items: &[PreferencePair],
        batch_size: usize,
    ) -> Option<Scores> {
        let reference = self.references[0].model(model);
        let scores = evaluate_pairs(&model.valid(), &reference, &self.config, items, batch_size)?;
        Some(Scores {
            loss: scores.loss,
            token_accuracy: None,
            preferences: Some(scores),
        })
    }
}
