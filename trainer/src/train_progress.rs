//! How `trainer train` shows a run: a progress bar (step, loss, DPO's reward margin
//! and accuracy, tokens/s, ETA) with a line per checkpoint and its sample answers, or, with `--json`, every event as
//! the JSON line `events.jsonl` holds (what a pod's log shows).

use std::io::Write;
use std::time::Duration;

use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use indicatif::{ProgressBar, ProgressStyle};

use anneal_train::event_log::EventSink;

/// Prints each event as a JSON line on stdout.
pub struct JsonLines;

impl EventSink for JsonLines {
    fn emit(&mut self, event: &TrainerEvent) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", event.to_line());
        let _ = out.flush();
    }
}

/// The interactive display.
pub struct ProgressDisplay {
    bar: ProgressBar,
    /// The last user message of each sample prompt, shown beside its answer.
    prompts: Vec<String>,
    /// An image job: a checkpoint's samples are image files, not answers.
    image_samples: bool,
    last_loss: Option<f64>,
    last_rate: Option<f64>,
    /// DPO: the latest step's reward margin and accuracy.
    last_rewards: Option<(f64, f64)>,
    /// DPO: the latest validation reward margin and accuracy, shown with its checkpoint.
    valid_rewards: Option<(f64, f64)>,
}

impl ProgressDisplay {
    /// The display of a chat job, whose checkpoints answer `prompts`.
    pub fn new(prompts: Vec<String>) -> Self {
        Self::with_samples(prompts, false)
    }

    /// The display of an image job, whose checkpoints draw `prompts` (the job's own;
    /// empty when it takes the default ones).
    pub fn for_images(prompts: Vec<String>) -> Self {
        Self::with_samples(prompts, true)
    }

    fn with_samples(prompts: Vec<String>, image_samples: bool) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] step {pos}/{len} {msg} ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            prompts,
            image_samples,
            last_loss: None,
            last_rate: None,
            last_rewards: None,
            valid_rewards: None,
        }
    }

    fn println(&self, line: String) {
        // A hidden bar (stdout is not a terminal) drops its printlns; the lines must still show.
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl EventSink for ProgressDisplay {
    fn emit(&mut self, event: &TrainerEvent) {
        match &event.body {
            EventBody::Phase { phase, message, .. } => self.println(format!(
                "{phase:?}{}",
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            EventBody::Progress(progress) => {
                self.bar.set_length(progress.total_steps);
                self.bar.set_position(progress.step);
            }
            EventBody::Metrics {
                step: 0, metrics, ..
            } => {
                if let Some(loss) = metrics.valid_loss {
                    let rewards = valid_rewards(metrics)
                        .map(|r| format!(", {}", rewards_text(r)))
                        .unwrap_or_default();
                    self.println(format!(
                        "before training: validation loss {loss:.3}{rewards}"
                    ));
                }
            }
            EventBody::Metrics { metrics, .. } => {
                self.last_loss = metrics.train_loss.or(self.last_loss);
                self.last_rate = metrics.tokens_per_second.or(self.last_rate);
                if let (Some(margin), Some(accuracy)) =
                    (metrics.reward_margin, metrics.reward_accuracy)
                {
                    self.last_rewards = Some((margin, accuracy));
                }
                self.valid_rewards = valid_rewards(metrics).or(self.valid_rewards);
                let rewards = self
                    .last_rewards
                    .map(|r| format!("  {}", rewards_text(r)))
                    .unwrap_or_default();
                self.bar.set_message(format!(
                    "loss {:.3}{rewards}  {:.0} tok/s",
                    self.last_loss.unwrap_or(f64::NAN),
                    self.last_rate.unwrap_or(0.0)
                ));
            }
            EventBody::Checkpoint(checkpoint) if self.image_samples => {
                self.println(format!(
                    "{} (step {}, epoch {:.2}) -> {}",
                    checkpoint.name, checkpoint.step, checkpoint.epoch, checkpoint.uri
                ));
                for (index, file) in checkpoint.samples.iter().enumerate() {
                    match self.prompts.get(index) {
                        Some(prompt) => self.println(format!("    {prompt:?}: {file}")),
                        None => self.println(format!("    {file}")),
                    }
                }
            }
            EventBody::Checkpoint(checkpoint) => {
                let rewards = self
                    .valid_rewards
                    .filter(|_| checkpoint.valid_loss.is_some())
                    .map(|r| format!(", {}", rewards_text(r)))
                    .unwrap_or_default();
                let loss = checkpoint
                    .valid_loss
                    .map(|l| format!("validation loss {l:.3}{rewards}"))
                    .unwrap_or_else(|| "no validation set".to_owned());
                // The score `best` goes by, with `checkpoints.evaluation`.
                let score = (checkpoint.evaluation.first())
                    .map(|s| format!(", {} {:.3}", s.metric, s.score))
                    .unwrap_or_default();
                self.println(format!(
                    "{} (step {}, epoch {:.2}): {loss}{score}  -> {}",
                    checkpoint.name, checkpoint.step, checkpoint.epoch, checkpoint.uri
                ));
                for (prompt, answer) in self.prompts.iter().zip(&checkpoint.samples) {
                    self.println(format!("    Q: {prompt}\n    A: {}", one_line(answer)));
                }
            }
            EventBody::Log { level, message } => {
                let tag = match level {
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warning",
                    LogLevel::Error => "error",
                };
                self.println(format!("{tag}: {message}"));
            }
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// DPO's validation reward margin and accuracy, when the event has them.
fn valid_rewards(metrics: &anneal_crds::finetunejob::Metrics) -> Option<(f64, f64)> {
    Some((metrics.valid_reward_margin?, metrics.valid_reward_accuracy?))
}

fn rewards_text((margin, accuracy): (f64, f64)) -> String {
    format!("reward margin {margin:.3} accuracy {accuracy:.2}")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
