//! Each evaluated model's answers to the held-out prompts: its folder loaded on the
//! chosen backend (with its adapter), every prompt put through its chat template and
//! continued as `trainer generate` continues a chat, one model in memory at a time.

use std::time::Instant;

use anneal_eval::report::ModelAnswers;
use anneal_eval::samples::EvalSample;
use anneal_model::backend::BackendJob;
use anneal_model::chat::{ChatError, ModelTokenizer};
use anneal_model::generate::{SamplingParams, generate};
use anneal_model::llm::{ModelError, load_model};
use anneal_model::lora::peft::{AdapterError, load_adapter};
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
}

impl BackendJob for AnswerJob {
    type Output = Result<Vec<ModelAnswers>, AnswerError>;

    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
        let mut all = Vec::with_capacity(self.models.len());
        for local in &self.models {
            let started = Instant::now();
            let answers = answer_with::<B>(local, &self.samples, &self.params, &device, dtype)?;
            eprintln!(
                "{}: {} answers in {:.1} s",
                local.name,
                answers.len(),
                started.elapsed().as_secs_f64()
            );
            all.push(ModelAnswers {
                model: local.name.clone(),
                answers,
            });
        }
        Ok(all)
    }
}

fn answer_with<B: Backend>(
    local: &LocalModel,
    samples: &[EvalSample],
    params: &SamplingParams,
    device: &B::Device,
    dtype: DType,
) -> Result<Vec<String>, AnswerError> {
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
    samples
        .iter()
        .map(|sample| {
            let prompt = tokenizer
                .encode_chat(&sample.prompt, true)
                .map_err(chat_error)?;
            let generation = generate(
                &model,
                &prompt.ids,
                tokenizer.eos_token_ids(),
                params,
                decode,
                |_| {},
            );
            Ok(generation.text)
        })
        .collect()
}
