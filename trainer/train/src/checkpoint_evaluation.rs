//! `checkpoints.evaluation`: at every checkpoint, the model being trained answers the
//! job's held-out chats and is scored by the job's metrics, as `trainer evaluate`
//! scores a checkpoint (the same generation, reference loss, metrics and bootstrap
//! intervals). The scores go into the checkpoint's status, where they decide which
//! checkpoint is best (`anneal_crds::best_checkpoint`); the answers, as a report
//! (`evaluation.json`) and a page (`evaluation.html`), into its folder.
//!
//! Memory: the answers come from the training model itself (its adapter unmerged),
//! one chat at a time, after the step's gradients are freed. What it adds is one
//! chat's KV cache: 56 KiB a token at 7B (Qwen2.5-7B, bf16: 28 layers x 2 x 4 KV
//! heads x 128), 320 KiB at 72B, so 0.1 and 0.6 GiB for a 2,048-token chat. Time:
//! each checkpoint answers every chat, up to `maxTokens` each: keep the set to tens
//! or a few hundred chats (`dataset.maxSamples`).

use std::time::Instant;

use anneal_crds::dataset::{ChatMessage, Role};
use anneal_crds::modelevaluation::MetricScore;
use anneal_eval::html::report_html;
use anneal_eval::report::{ModelAnswers, NamedMetric, Report, ReportError, Scorer, build_report};
use anneal_eval::samples::EvalSample;
use anneal_eval::status::evaluation_results;
use anneal_model::chat::{ChatError, ModelTokenizer};
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::CausalLm;
use burn::prelude::Backend;

use crate::sft::evaluate::evaluate;
use crate::tokenized::TokenizedSample;

/// The report's file in the checkpoint's folder.
pub const EVALUATION_FILE: &str = "evaluation.json";
/// The report as a page, answers beside their references.
pub const EVALUATION_PAGE: &str = "evaluation.html";

/// What every checkpoint is asked and scored by: read and checked before training
/// starts, so a bad line or metric fails the run before its first step.
pub struct CheckpointEvaluation {
    /// The dataset's name, for messages.
    pub dataset: String,
    pub samples: Vec<EvalSample>,
    pub metrics: Vec<NamedMetric>,
    pub params: SamplingParams,
}

/// One checkpoint's evaluation: its scores as the status carries them, and the report
/// with every answer.
pub struct CheckpointScores {
    pub scores: Vec<MetricScore>,
    pub report: Report,
    pub seconds: f64,
}

/// Why a checkpoint could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointEvaluationError {
    #[error("checkpoints.evaluation: dataset line {line}: {source}")]
    Chat {
        line: u64,
        #[source]
        source: ChatError,
    },
    #[error("checkpoints.evaluation: {0}")]
    Report(#[from] ReportError),
}

impl CheckpointEvaluation {
    fn reference_loss(&self) -> bool {
        (self.metrics.iter()).any(|m| matches!(m.scorer, Scorer::ReferenceLoss))
    }

    /// `model` (an inference model) answers every chat and is scored; `checkpoint`
    /// names it in the report.
    pub fn run<B: Backend>(
        &self,
        model: &CausalLm<B>,
        tokenizer: &ModelTokenizer,
        checkpoint: &str,
    ) -> Result<CheckpointScores, CheckpointEvaluationError> {
        let started = Instant::now();
        let reference_loss = self.reference_loss();
        let mut answers = Vec::with_capacity(self.samples.len());
        let mut losses = Vec::with_capacity(self.samples.len());
        for sample in &self.samples {
            let chat_error = |source| CheckpointEvaluationError::Chat {
                line: sample.line,
                source,
            };
            let prompt = tokenizer
                .encode_chat(&sample.prompt, true)
                .map_err(chat_error)?;
            let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
            let answer = generate(
                model,
                &prompt.ids,
                tokenizer.eos_token_ids(),
                &self.params,
                decode,
                |_| {},
            );
            answers.push(answer.text);
            if reference_loss {
                let loss = reference_loss_of(model, tokenizer, sample, prompt.ids.len());
                losses.push(loss.map_err(chat_error)?);
            }
        }
        let answered = ModelAnswers {
            model: checkpoint.to_owned(),
            answers,
            reference_losses: reference_loss.then_some(losses),
            judged: Vec::new(),
        };
        let report = build_report(
            &self.samples,
            &[answered],
            &self.metrics,
            checkpoint,
            self.params.seed,
        )?;
        let scores = evaluation_results(&report)
            .results
            .pop()
            .map(|result| result.metrics)
            .unwrap_or_default();
        Ok(CheckpointScores {
            scores,
            report,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

impl CheckpointScores {
    /// `evaluation.json` and `evaluation.html`, for the checkpoint's folder.
    pub fn files(&self, title: &str) -> [(&'static str, String); 2] {
        let json = serde_json::to_string_pretty(&self.report).expect("the report serializes");
        [
            (EVALUATION_FILE, json),
            (EVALUATION_PAGE, report_html(&self.report, title)),
        ]
    }

    /// One line for the run's log: each score with its interval.
    pub fn summary(&self, checkpoint: &str, chats: usize) -> String {
        let scores: Vec<String> = (self.scores.iter())
            .map(|s| format!("{} {:.4} [{:.4}, {:.4}]", s.metric, s.score, s.low, s.high))
            .collect();
        format!(
            "{checkpoint}: evaluated on {chats} held-out chats in {:.1} s: {}",
            self.seconds,
            scores.join(", ")
        )
    }
}

/// The model's mean loss per token of `sample`'s reference answer, given its prompt
/// (`prompt_tokens` long with the generation prompt): the masked cross-entropy
/// validation computes, on the reference's tokens only (earlier assistant turns of
/// the prompt are context, not scored).
pub fn reference_loss_of<B: Backend>(
    model: &CausalLm<B>,
    tokenizer: &ModelTokenizer,
    sample: &EvalSample,
    prompt_tokens: usize,
) -> Result<f64, ChatError> {
    let mut messages = sample.prompt.clone();
    messages.push(ChatMessage {
        role: Role::Assistant,
        content: sample.reference.clone().unwrap_or_default(),
    });
    let chat = tokenizer.encode_chat(&messages, false)?;
    let mut mask: Vec<bool> = chat
        .assistant_mask
        .iter()
        .enumerate()
        .map(|(i, &trained)| trained && i >= prompt_tokens)
        .collect();
    // A template that renders the prompt differently once answered: score every
    // assistant token rather than none.
    if !mask.iter().skip(1).any(|&m| m) {
        mask = chat.assistant_mask;
    }
    let tokenized = TokenizedSample {
        line: sample.line,
        ids: chat.ids,
        mask,
    };
    Ok(evaluate(model, &[tokenized], 1).map_or(f64::NAN, |scores| scores.loss))
}
