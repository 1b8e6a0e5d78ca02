//! Asking one model a list of chats, wherever it is: loaded here on the chosen
//! device ([`super::answer`], with its losses on the references when asked), or over
//! HTTP ([`super::endpoint`]), each reply kept as it comes ([`super::kept`]) so that a
//! retry continues where this try stopped. The evaluated models' answers and the
//! judge's verdicts both come through here.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use anneal_eval::samples::EvalSample;
use anneal_model::backend::{BackendError, run_on};
use anneal_model::generate::SamplingParams;

use super::answer::{AnswerError, AnswerJob, AnswerJobError};
use super::endpoint::{ChatEndpoint, EndpointError, RequestSettings};
use super::kept::Keeper;
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
    #[error("keeping the answers of model {model}: {message}")]
    Keeping { model: String, message: String },
}

impl AskError {
    /// A served model out of reach, or storage, may pass on a later try.
    pub fn may_pass_on_retry(&self) -> bool {
        match self {
            AskError::Endpoint { source, .. } => source.may_pass_on_retry(),
            AskError::Keeping { .. } => true,
            _ => false,
        }
    }
}

/// `model`'s reply to each sample's prompt (and its loss on each reference with
/// `reference_loss`, for a model whose weights are loaded), continuing from what
/// `keeper` kept and keeping each new reply. What came before a failure stays kept.
pub fn ask(
    model: &Resolved,
    samples: &[EvalSample],
    settings: &AskSettings,
    reference_loss: bool,
    mut keeper: Keeper<'_>,
) -> Result<Replies, AskError> {
    let keeping = |e: &dyn std::fmt::Display| AskError::Keeping {
        model: model.name().to_owned(),
        message: e.to_string(),
    };
    let done = keeper.kept().replies.len().min(samples.len());
    if done > 0 {
        eprintln!(
            "{}: {done} of {} replies kept from an earlier try",
            model.name(),
            samples.len()
        );
    }
    let bar = progress_bar(model.name(), samples.len(), done);
    let asked = ask_remaining(
        model,
        &samples[done..],
        settings,
        reference_loss,
        &mut keeper,
        &bar,
    );
    bar.finish_and_clear();
    let saved = keeper.save();
    asked?;
    saved.map_err(|e| keeping(&e))?;
    let kept = keeper.finish().map_err(|e| keeping(&e))?;
    Ok(Replies {
        answers: kept.replies,
        reference_losses: kept.reference_losses,
    })
}

/// Asks `samples` (those not kept yet), adding each reply to `keeper`.
fn ask_remaining(
    model: &Resolved,
    samples: &[EvalSample],
    settings: &AskSettings,
    reference_loss: bool,
    keeper: &mut Keeper<'_>,
    bar: &ProgressBar,
) -> Result<(), AskError> {
    if samples.is_empty() {
        return Ok(());
    }
    match model {
        Resolved::Local(local) => {
            let mut on_answer = |answer: String, loss: Option<f64>| {
                bar.inc(1);
                keeper.add(answer, loss).map_err(|e| e.to_string())
            };
            let job = AnswerJob {
                model: local.clone(),
                samples,
                params: settings.params.clone(),
                reference_loss,
                on_answer: &mut on_answer,
            };
            run_on(settings.device.into(), job)?.map_err(|e| match e {
                AnswerJobError::Answer(e) => AskError::Answer(e),
                AnswerJobError::Keeping(message) => AskError::Keeping {
                    model: local.name.clone(),
                    message,
                },
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
            for sample in samples {
                let answer = endpoint
                    .complete(&sample.prompt, request)
                    .map_err(endpoint_error)?;
                bar.inc(1);
                keeper.add(answer, None).map_err(|e| AskError::Keeping {
                    model: served.name.clone(),
                    message: e.to_string(),
                })?;
            }
            eprintln!(
                "{} ({} at {}): {} answers in {:.1} s",
                served.name,
                endpoint.model(),
                served.target.url,
                samples.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// A bar of `model`'s replies on a terminal (drawn nowhere else: not in a pod's log),
/// starting at the `done` kept from an earlier try.
fn progress_bar(model: &str, total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} replies, ETA {eta}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(model.to_owned());
    bar.set_position(done as u64);
    bar
}
