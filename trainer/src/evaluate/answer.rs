//! Each evaluated model's answers to the held-out prompts: its folder loaded on the
//! chosen backend (with its adapter), every prompt put through its chat template and
//! continued as `trainer generate` continues a chat, one model in memory at a time.

use std::time::Instant;

use anneal_crds::dataset::{ChatMessage, Role};
use anneal_eval::report::ModelAnswers;
use anneal_eval::samples::EvalSample;
use anneal_model::backend::BackendJob;
use anneal_model::chat::{ChatError, ModelTokenizer};
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{CausalLm, ModelError, load_model};
use anneal_model::lora::peft::{AdapterError, load_adapter};
use anneal_train::sft::evaluate::evaluate;
use anneal_train::tokenized::TokenizedSample;
use burn::prelude::Backend;
use burn::tensor::DType;

use super::resolve::LocalModel;

/// Why a model could not answer; each names the model.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("model {model}: {source}")]
    Model {
        model: String,
        #[source]
        source: ModelError,
    },
    #[error("model {model}: {source}")]
    Adapter {
        model: String,
        #[source]
        source: AdapterError,
    },
    #[error("model {model}: {source}")]
    Chat {
        model: String,
        #[source]
        source: ChatError,
    },
}

/// The models and what they answer.
pub struct AnswerJob {
    pub models: Vec<LocalModel>,
    pub samples: Vec<EvalSample>,
    pub params: SamplingParams,
    /// Also each model's loss on every reference answer (the `referenceLoss` metric).
    pub reference_loss: bool,
}

impl BackendJob for AnswerJob {
    type Output = Result<Vec<ModelAnswers>, AnswerError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let mut all = Vec::with_capacity(self.models.len());
        for local in &self.models {
            let started = Instant::now();
            let (answers, reference_losses) =
                answer_with::<B>(local, &self.samples, &self, &device, dtype)?;
            eprintln!(
                "{}: {} answers in {:.1} s",
                local.name,
                answers.len(),
                started.elapsed().as_secs_f64()
            );
            all.push(ModelAnswers {
                model: local.name.clone(),
                answers,
                reference_losses,
                judged: Vec::new(),
            });
        }
        Ok(all)
    }
}

/// The model's answers, and with `job.reference_loss` its loss on each reference.
fn answer_with<B: Backend>(
    local: &LocalModel,
    samples: &[EvalSample],
    job: &AnswerJob,
    device: &B::Device,
    dtype: DType,
) -> Result<(Vec<String>, Option<Vec<f64>>), AnswerError> {
    let model_error = |source| AnswerError::Model {
        model: local.name.clone(),
        source,
    };
    let chat_error = |source| AnswerError::Chat {
        model: local.name.clone(),
        source,
    };
    let (config, model) = load_model::<B>(&local.model_dir, device, dtype).map_err(model_error)?;
    let model = match &local.adapter {
        Some(dir) => load_adapter(model, dir).map_err(|source| AnswerError::Adapter {
            model: local.name.clone(),
            source,
        })?,
        None => model,
    };
    let tokenizer = ModelTokenizer::from_model_dir(&local.model_dir, &config.architecture)
        .map_err(chat_error)?;
    tokenizer
        .check_vocabulary(config.vocab_size)
        .map_err(chat_error)?;
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
    let mut answers = Vec::with_capacity(samples.len());
    let mut losses = Vec::with_capacity(samples.len());
    for sample in samples {
        let prompt = tokenizer
            .encode_chat(&sample.prompt, true)
            .map_err(chat_error)?;
        let generation = generate(
            &model,
            &prompt.ids,
            tokenizer.eos_token_ids(),
            &job.params,
            decode,
            |_| {},
        );
        answers.push(generation.text);
        if job.reference_loss {
            let loss = reference_loss(&model, &tokenizer, sample, prompt.ids.len());
            losses.push(loss.map_err(chat_error)?);
        }
    }
    Ok((answers, job.reference_loss.then_some(losses)))
}

/// The model's mean loss per token of `sample`'s reference answer, given its prompt
/// (`prompt_tokens` long with the generation prompt): the masked cross-entropy
/// validation computes, on the reference's tokens only (earlier assistant turns of
/// the prompt are context, not scored).
fn reference_loss<B: Backend>(
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
