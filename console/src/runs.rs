//! The runs `trainer train` left in a runs folder, as the console shows them: each
//! `{namespace}/{job}/{run id}/` with an `events.jsonl`, folded into where the run
//! stands (phase, step, losses, checkpoints with their answers and scores, the log)
//! each time a page asks. Nothing is kept between requests.

use std::path::{Path, PathBuf};

use anneal_crds::best_checkpoint::best_checkpoint_name;
use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use anneal_crds::finetunejob::{CheckpointStatus, FineTuneJob, JobPhase, Task};

/// The file every run has: the trainer's events, one JSON line each.
const EVENTS_FILE: &str = "events.jsonl";
/// The run's copy of the job it trained.
const JOB_FILE: &str = "job.yaml";
/// Log lines a run page shows, the newest.
pub const LOG_LINES_SHOWN: usize = 200;

/// Where a run is: `{namespace}/{job}/{run id}` below the runs folder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunKey {
    pub namespace: String,
    pub job: String,
    pub run: String,
}

impl RunKey {
    /// The key of a page's path segments, when each is a plain name (no `..`, no
    /// separators, nothing hidden): the console never reads outside the runs folder.
    pub fn from_segments(namespace: &str, job: &str, run: &str) -> Option<Self> {
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (plain(namespace) && plain(job) && plain(run)).then(|| Self {
            namespace: namespace.to_owned(),
            job: job.to_owned(),
            run: run.to_owned(),
        })
    }

    pub fn folder(&self, root: &Path) -> PathBuf {
        root.join(&self.namespace).join(&self.job).join(&self.run)
    }

    /// The run page's path.
    pub fn href(&self) -> String {
        format!("/runs/{}/{}/{}", self.namespace, self.job, self.run)
    }
}

/// One log line of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub time: String,
    pub level: LogLevel,
    pub message: String,
}

/// A run as its events tell it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    /// Where a local run is in the runs folder (none for a cluster job).
    pub key: Option<RunKey>,
    /// What its page is headed with, and the page's path: the console's sample
    /// pictures are served below it.
    pub title: String,
    pub href: String,
    /// The server-sent events route telling of its changes (a cluster's job).
    pub watch: Option<String>,
    pub phase: Option<JobPhase>,
    pub message: Option<String>,
    /// When its first event was written.
    pub started: Option<String>,
    pub step: u64,
    pub total_steps: u64,
    /// `(step, loss)` of every step that logged one.
    pub train_loss: Vec<(u64, f64)>,
    pub valid_loss: Vec<(u64, f64)>,
    /// `(step, value)` of the other metrics the steps logged: learning rate, tokens
    /// per second, and DPO's reward margin and accuracy.
    pub learning_rate: Vec<(u64, f64)>,
    pub throughput: Vec<(u64, f64)>,
    pub reward_margin: Vec<(u64, f64)>,
    pub reward_accuracy: Vec<(u64, f64)>,
    pub tokens_per_second: Option<f64>,
    pub checkpoints: Vec<CheckpointStatus>,
    pub best_checkpoint: Option<String>,
    pub model_id: Option<String>,
    /// The newest [`LOG_LINES_SHOWN`] log lines.
    pub log: Vec<LogLine>,
    /// The base model and the sample prompts, from the run's `job.yaml`.
    pub base_model: Option<String>,
    pub sample_prompts: Vec<String>,
    /// Whether its checkpoints can be chatted with in `trainer console`'s playground:
    /// a local chat run whose `job.yaml` names its base model.
    pub playground: bool,
    /// Lines of `events.jsonl` that are not events (a run written by another version).
    pub unreadable_lines: u64,
}

impl RunSummary {
    /// The run with its step series cut to `window`, for zoomed charts.
    pub fn within(&self, window: &crate::chart::StepWindow) -> Self {
        let mut cut = self.clone();
        for series in [
            &mut cut.train_loss,
            &mut cut.valid_loss,
            &mut cut.learning_rate,
            &mut cut.throughput,
            &mut cut.reward_margin,
            &mut cut.reward_accuracy,
        ] {
            *series = window.of(series);
        }
        cut
    }
}

/// Every run below `root`, newest run id first within a job, jobs by name.
pub fn list_runs(root: &Path) -> Vec<RunKey> {
    let names = |dir: &Path| -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut keys = Vec::new();
    for namespace in names(root) {
        for job in names(&root.join(&namespace)) {
            let mut runs = names(&root.join(&namespace).join(&job));
            runs.reverse();
            for run in runs {
                let key = RunKey::from_segments(&namespace, &job, &run);
                if let Some(key) = key.filter(|k| k.folder(root).join(EVENTS_FILE).is_file()) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// The run at `key` below `root`, or `None` when there is none.
pub fn read_run(root: &Path, key: &RunKey) -> Option<RunSummary> {
    let folder = key.folder(root);
    let text = std::fs::read_to_string(folder.join(EVENTS_FILE)).ok()?;
    let mut summary = fold_events(&text);
    summary.title = format!("{}/{} {}", key.namespace, key.job, key.run);
    summary.href = key.href();
    summary.key = Some(key.clone());
    if let Some(job) = std::fs::read_to_string(folder.join(JOB_FILE))
        .ok()
        .and_then(|yaml| serde_yaml_ng::from_str::<FineTuneJob>(&yaml).ok())
    {
        summary.base_model = Some(job.spec.base_model.name.clone());
        summary.sample_prompts = sample_prompt_texts(&job);
        summary.playground = job.spec.task == Task::Chat;
    }
    Some(summary)
}

/// What each of the job's sample prompts asks: its prompt, or its last message.
pub fn sample_prompt_texts(job: &FineTuneJob) -> Vec<String> {
    (job.spec.checkpoints.sample_prompts.iter())
        .map(|p| match (&p.prompt, p.messages.last()) {
            (Some(prompt), _) => prompt.clone(),
            (None, Some(last)) => last.content.clone(),
            (None, None) => String::new(),
        })
        .collect()
}

/// Where a run stands after the events in `text` (`events.jsonl`).
pub fn fold_events(text: &str) -> RunSummary {
    let mut summary = RunSummary::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(event) = TrainerEvent::from_line(line) else {
            summary.unreadable_lines += 1;
            continue;
        };
        summary.started.get_or_insert_with(|| event.time.clone());
        match event.body {
            EventBody::Phase {
                phase,
                message,
                result,
            } => {
                summary.phase = Some(phase);
                summary.message = message.or(summary.message.take());
                if let Some(result) = result {
                    summary.model_id = Some(result.model_id);
                }
            }
            EventBody::Progress(progress) => {
                summary.step = progress.step;
                summary.total_steps = progress.total_steps;
            }
            EventBody::Metrics { step, metrics, .. } => {
                if let Some(loss) = metrics.train_loss {
                    summary.train_loss.push((step, loss));
                }
                if let Some(loss) = metrics.valid_loss {
                    summary.valid_loss.push((step, loss));
                }
                let series = [
                    (&mut summary.learning_rate, metrics.learning_rate),
                    (&mut summary.throughput, metrics.tokens_per_second),
                    (&mut summary.reward_margin, metrics.reward_margin),
                    (&mut summary.reward_accuracy, metrics.reward_accuracy),
                ];
                for (series, value) in series {
                    series.extend(value.map(|v| (step, v)));
                }
                summary.tokens_per_second = metrics.tokens_per_second.or(summary.tokens_per_second);
            }
            EventBody::Checkpoint(checkpoint) => {
                // A resumed run may write the same checkpoint again: the newest stands.
                summary.checkpoints.retain(|c| c.name != checkpoint.name);
                summary.checkpoints.push(checkpoint);
            }
            EventBody::Log { level, message } => {
                summary.log.push(LogLine {
                    time: event.time,
                    level,
                    message,
                });
            }
        }
    }
    let excess = summary.log.len().saturating_sub(LOG_LINES_SHOWN);
    summary.log.drain(..excess);
    summary.checkpoints.sort_by_key(|c| c.step);
    summary.best_checkpoint = best_checkpoint_name(&summary.checkpoints);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_make_a_key() {
        assert!(RunKey::from_segments("team-a", "cli", "r1").is_some());
        for bad in ["..", ".hidden", "a/b", "", "a\\b", "%2e%2e"] {
            assert_eq!(RunKey::from_segments("team-a", bad, "r1"), None, "{bad}");
        }
    }

    #[test]
    fn events_fold_into_the_runs_standing() {
        let lines = [
            r#"{"seq":1,"time":"2026-12-05T10:00:00Z","type":"phase","phase":"Running"}"#,
            r#"{"seq":2,"time":"2026-12-05T10:00:01Z","type":"metrics","step":1,"epoch":0.1,"trainLoss":2.5,"tokensPerSecond":900.0,"learningRate":0.0001,"rewardMargin":-0.5}"#,
            r#"{"seq":3,"time":"2026-12-05T10:00:02Z","type":"progress","epoch":0.2,"step":2,"totalSteps":10,"percent":20}"#,
            r#"{"seq":4,"time":"2026-12-05T10:00:02Z","type":"metrics","step":2,"epoch":0.2,"trainLoss":2.0,"validLoss":2.2}"#,
            r#"{"seq":5,"time":"2026-12-05T10:00:03Z","type":"checkpoint","name":"ckpt-2","step":2,"epoch":0.2,"uri":"file:///r/checkpoints/ckpt-2","validLoss":2.2,"samples":["Good question!"]}"#,
            "not an event",
            r#"{"seq":6,"time":"2026-12-05T10:00:04Z","type":"log","level":"warn","message":"slow disk"}"#,
            r#"{"seq":7,"time":"2026-12-05T10:00:05Z","type":"phase","phase":"Succeeded","message":"trained 10 steps","result":{"modelId":"ft:anneal-tiny:cli:ckpt-2","uri":"file:///r/final"}}"#,
        ];
        let summary = fold_events(&lines.join("\n"));
        assert_eq!(summary.phase, Some(JobPhase::Succeeded));
        assert_eq!(summary.message.as_deref(), Some("trained 10 steps"));
        assert_eq!((summary.step, summary.total_steps), (2, 10));
        assert_eq!(summary.train_loss, [(1, 2.5), (2, 2.0)]);
        assert_eq!(summary.valid_loss, [(2, 2.2)]);
        assert_eq!(summary.tokens_per_second, Some(900.0));
        assert_eq!(summary.learning_rate, [(1, 0.0001)]);
        assert_eq!(summary.throughput, [(1, 900.0)]);
        assert_eq!(summary.reward_margin, [(1, -0.5)]);
        assert!(summary.reward_accuracy.is_empty());
        assert_eq!(summary.checkpoints.len(), 1);
        assert_eq!(summary.best_checkpoint.as_deref(), Some("ckpt-2"));
        assert_eq!(
            summary.model_id.as_deref(),
            Some("ft:anneal-tiny:cli:ckpt-2")
        );
        assert_eq!(summary.log[0].message, "slow disk");
        assert_eq!(summary.started.as_deref(), Some("2026-12-05T10:00:00Z"));
        assert_eq!(summary.unreadable_lines, 1);
    }
}
