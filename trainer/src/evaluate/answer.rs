//! A model's answers to a list of prompts from its weights: its folder loaded on the
//! chosen backend (with its adapter), every prompt put through its chat template and
//! continued as `trainer generate` continues a chat, one model in memory at a time.

use std::time::Instant;

use anneal_eval::samples::EvalSample;
use anneal_model::backend::BackendJob;
use anneal_model::chat::{ChatError, ModelTokenizer};
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{ModelError, load_model};
use anneal_model::lora::peft::{AdapterError, load_adapter};
use anneal_train::checkpoint_evaluation::reference_loss_of;
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

/// One model and the prompts it answers; each answer (and with `reference_loss` its
/// loss on the reference) goes to `on_answer` as it comes.
pub struct AnswerJob<'a> {
    pub model: LocalModel,
    pub samples: &'a [EvalSample],
    pub params: SamplingParams,
    pub reference_loss: bool,
    pub on_answer: &'a mut dyn FnMut(String, Option<f64>) -> Result<(), String>,
}

/// Why a model could not answer, or its answers could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum AnswerJobError {
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error("{0}")]
    Keeping(String),
}

impl BackendJob for AnswerJob<'_> {
    type Output = Result<(), AnswerJobError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let started = Instant::now();
        let local = &self.model;
        let model_error = |source| AnswerError::Model {
            model: local.name.clone(),
            source,
        };
        let chat_error = |source| AnswerError::Chat {
            model: local.name.clone(),
            source,
        };
        let (config, model) =
            load_model::<B>(&local.model_dir, &device, dtype).map_err(model_error)?;
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
        for sample in self.samples {
            let prompt = tokenizer
                .encode_chat(&sample.prompt, true)
                .map_err(chat_error)?;
            let generation = generate(
                &model,
                &prompt.ids,
                tokenizer.eos_token_ids(),
                &self.params,
                decode,
                |_| {},
            );
            let loss = match self.reference_loss {
                true => Some(
                    reference_loss_of(&model, &tokenizer, sample, prompt.ids.len())
                        .map_err(chat_error)?,
                ),
                false => None,
            };
            (self.on_answer)(generation.text, loss).map_err(AnswerJobError::Keeping)?;
        }
        eprintln!(
            "{}: {} answers in {:.1} s",
            local.name,
            self.samples.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
