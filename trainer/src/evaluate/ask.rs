//! Asking one model a list of chats, wherever it is: loaded here on the chosen
//! device ([`super::answer`], with its losses on the references when asked), or over
//! HTTP ([`super::endpoint`]). The evaluated models' answers and the judge's verdicts
//! both come through here.

use std::time::Instant;

use anneal_eval::samples::EvalSample;
use anneal_model::backend::{BackendError, run_on};
use anneal_model::generate::SamplingParams;

use super::answer::{AnswerError, AnswerJob};
use super::endpoint::{ChatEndpoint, EndpointError, RequestSettings};
use super::resolve::Resolved;
use crate::device_arg::DeviceArg;

/// How every model answers.
#[derive(Clone, Debug)]
pub struct AskSettings {
    pub params: SamplingParams,
    pub device: DeviceArg,
}

/// A model's replies, one per chat, and where computed its loss on each reference.
pub struct Replies {
    pub answers: Vec<String>,
    pub reference_losses: Option<Vec<f64>>,
}

/// Why a model did not answer; each names the model.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error("model {model}: {source}")]
    Endpoint {
        model: String,
        #[source]
        source: EndpointError,
    },
}

impl AskError {
    /// A served model that could not be reached may answer on a later try.
    pub fn may_pass_on_retry(&self) -> bool {
        matches!(self, AskError::Endpoint { source, .. } if source.may_pass_on_retry())
    }
}

/// `model`'s reply to each sample's prompt (and its loss on each reference with
/// `reference_loss`, for a model whose weights are loaded).
pub fn ask(
    model: &Resolved,
    samples: &[EvalSample],
    settings: &AskSettings,
    reference_loss: bool,
) -> Result<Replies, AskError> {
    match model {
        Resolved::Local(local) => {
            let job = AnswerJob {
                models: vec![local.clone()],
                samples: samples.to_vec(),
                params: settings.params.clone(),
                reference_loss,
            };
            let mut answered = run_on(settings.device.into(), job)??;
            let answered = answered.remove(0);
            Ok(Replies {
                answers: answered.answers,
                reference_losses: answered.reference_losses,
            })
        }
        Resolved::Served(served) => {
            let endpoint_error = |source| AskError::Endpoint {
                model: served.name.clone(),
                source,
            };
            let started = Instant::now();
            let endpoint = ChatEndpoint::connect(&served.target).map_err(endpoint_error)?;
            let request = RequestSettings {
                temperature: f64::from(settings.params.temperature),
                max_tokens: settings.params.max_new_tokens as u32,
                seed: settings.params.seed,
            };
            let answers = samples
                .iter()
                .map(|sample| endpoint.complete(&sample.prompt, request))
                .collect::<Result<Vec<_>, _>>()
                .map_err(endpoint_error)?;
            eprintln!(
                "{} ({} at {}): {} answers in {:.1} s",
                served.name,
                endpoint.model(),
                served.target.url,
                answers.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(Replies {
                answers,
                reference_losses: None,
            })
        }
    }
}
