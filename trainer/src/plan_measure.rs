//! `trainer plan --measure`: the run's duration on this machine's CPU, from a short
//! real run rather than from FLOPs. The job trains, as `trainer train --device cpu`
//! would, into a temporary folder with a checkpoint every [`CHECKPOINT_EVERY`]
//! steps, and stops after [`STEPS_TIMED`] steps. The time of each step is read off
//! its progress event:
//!
//! - a step: the median of the steps without a checkpoint next to them;
//! - a checkpoint: what the two steps around one took beyond two steps (validation
//!   before it, sample answers, `checkpoints.evaluation` and the save after it);
//! - the start: loading the model and the data, the first validation, less a step.
//!
//! The whole run is then the start, every step, and every checkpoint the job's own
//! schedule makes. What FLOPs leave out (the CPU's real speed, checkpoints,
//! validation, loading) is in the figures; what the first steps do not show (later
//! batches of other lengths) is not.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_crds::estimate::rough_duration;
use anneal_crds::events::{EventBody, TrainerEvent};
use anneal_crds::memory_plan::ByteSize;
use anneal_model::backend::DeviceChoice;
use anneal_train::event_log::EventSink;
use anneal_train::train_backend::run_training_on;
use clap::Parser;

use crate::train_command::{TrainArgs, TrainJob, prepare_run};

/// The calibration run's checkpoint interval.
const CHECKPOINT_EVERY: u64 = 4;
/// Steps it takes before it stops: three without a checkpoint next to them on
/// each side of the one at step 4.
const STEPS_TIMED: u64 = 2 * CHECKPOINT_EVERY - 1;

/// What the short run showed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub startup: Duration,
    pub step: Duration,
    pub checkpoint: Duration,
    /// The job's own steps, all epochs.
    pub total_steps: u64,
}

/// Records when each step's progress arrives, and stops the run after `stop_after`.
struct StepClock {
    arrivals: Arc<Mutex<Vec<(u64, u64, Instant)>>>,
    stop: Arc<AtomicBool>,
    stop_after: u64,
}

impl EventSink for StepClock {
    fn emit(&mut self, event: &TrainerEvent) {
        if let EventBody::Progress(progress) = &event.body {
            let now = Instant::now();
            let arrivals = &mut self.arrivals.lock().expect("arrivals lock");
            arrivals.push((progress.step, progress.total_steps, now));
            if progress.step >= self.stop_after {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// The CLI flags `trainer train` would get for the calibration run.
#[derive(Parser)]
struct TrainFlags {
    #[command(flatten)]
    args: TrainArgs,
}

/// Runs the job's first steps on the CPU and times them.
pub fn measure_run(
    manifest: &Path,
    job: &FineTuneJob,
    manifest_dir: &Path,
    cpu_memory: Option<ByteSize>,
) -> Result<Measured, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
    let output = scratch.path().join("runs");
    let mut flags = vec![
        "trainer".to_owned(),
        manifest.display().to_string(),
        "--device".to_owned(),
        "cpu".to_owned(),
        "--output".to_owned(),
        output.display().to_string(),
    ];
    if let Some(memory) = cpu_memory {
        flags.extend(["--cpu-memory".to_owned(), memory.to_string()]);
    }
    let args = TrainFlags::try_parse_from(flags)
        .map_err(|e| e.to_string())?
        .args;
    let mut calibration = job.clone();
    calibration.spec.checkpoints.every_steps = Some(CHECKPOINT_EVERY as u32);
    let started = Instant::now();
    let mut inputs = prepare_run(&args, &calibration, manifest_dir, scratch.path(), None)
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    inputs.stop = stop.clone();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let clock = StepClock {
        arrivals: arrivals.clone(),
        stop,
        stop_after: STEPS_TIMED,
    };
    let run = TrainJob {
        inputs,
        sinks: vec![Box::new(clock)],
    };
    run_training_on(DeviceChoice::Cpu, 1, run)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let arrivals = arrivals.lock().expect("arrivals lock").clone();
    timings(started, &arrivals)
}

/// The figures from the progress arrivals `(step, total steps, when)` of a run that
/// began at `started`.
fn timings(started: Instant, arrivals: &[(u64, u64, Instant)]) -> Result<Measured, String> {
    let at = |step: u64| {
        (arrivals.iter())
            .find(|(s, _, _)| *s == step)
            .map(|(_, _, when)| *when)
    };
    let (Some(first), Some(total_steps)) = (at(1), arrivals.first().map(|a| a.1)) else {
        return Err("the run took no step".to_owned());
    };
    let interval = |from: u64| Some(at(from + 1)?.duration_since(at(from)?));
    // Steps whose neighbours have no checkpoint: validation runs in step 4 before its
    // progress, sample answers and the save after it.
    let mut plain: Vec<Duration> = (1..STEPS_TIMED)
        .filter(|from| ![CHECKPOINT_EVERY - 1, CHECKPOINT_EVERY].contains(from))
        .filter_map(interval)
        .collect();
    plain.sort();
    let (Some(&step), Some(before), Some(after)) = (
        plain.get(plain.len() / 2),
        interval(CHECKPOINT_EVERY - 1),
        interval(CHECKPOINT_EVERY),
    ) else {
        return Err(format!(
            "{total_steps} steps are too few to time a step and a checkpoint apart: train it (trainer train) to see"
        ));
    };
    Ok(Measured {
        startup: first.duration_since(started).saturating_sub(step),
        step,
        checkpoint: (before + after).saturating_sub(step * 2),
        total_steps,
    })
}

/// How many checkpoints the job's own schedule makes in `total_steps`.
pub fn checkpoints_in(job: &FineTuneJob, total_steps: u64) -> u64 {
    let checkpoints = &job.spec.checkpoints;
    let epochs = u64::from(job.resolved_hyperparameters().epochs.max(1));
    let per_epoch = (total_steps / epochs).max(1);
    (1..=total_steps)
        .filter(|&step| {
            step == total_steps
                || (checkpoints.every_epoch && step.is_multiple_of(per_epoch))
                || (checkpoints.every_steps)
                    .is_some_and(|n| n > 0 && step.is_multiple_of(u64::from(n)))
        })
        .count() as u64
}

/// The estimate's lines from the measured figures.
pub fn measured_lines(job: &FineTuneJob, measured: &Measured) -> Vec<String> {
    let checkpoints = checkpoints_in(job, measured.total_steps);
    let total = measured.startup
        + measured.step * measured.total_steps as u32
        + measured.checkpoint * checkpoints as u32;
    vec![
        format!(
            "  measured on this CPU: start {:.1} s, {:.3} s a step, {:.2} s a checkpoint (validation, samples, evaluation, save)",
            measured.startup.as_secs_f64(),
            measured.step.as_secs_f64(),
            measured.checkpoint.as_secs_f64()
        ),
        format!(
            "  duration: {} in all on this CPU ({} steps, {checkpoints} checkpoints)",
            rough_duration(total.as_secs_f64()),
            measured.total_steps
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_checkpoints_and_the_start_come_apart() {
        let started = Instant::now();
        // Start 2 s; a step 100 ms; step 4 adds 300 ms of validation before its
        // progress and 500 ms of checkpoint after it.
        let mut now = started + Duration::from_millis(2100);
        let mut arrivals = vec![(1, 20, now)];
        for step in 2..=7u64 {
            now += Duration::from_millis(match step {
                4 => 400,
                5 => 600,
                _ => 100,
            });
            arrivals.push((step, 20, now));
        }
        let measured = timings(started, &arrivals).unwrap();
        assert_eq!(
            measured,
            Measured {
                startup: Duration::from_millis(2000),
                step: Duration::from_millis(100),
                checkpoint: Duration::from_millis(800),
                total_steps: 20,
            }
        );
        let short = timings(started, &arrivals[..3]);
        assert!(short.unwrap_err().contains("too few"));
    }

    #[test]
    fn the_jobs_own_schedule_counts_its_checkpoints() {
        let job = anneal_crds::manifest::parse_finetunejob(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/quickstart/finetunejob.yaml"),
            )
            .unwrap(),
        )
        .unwrap();
        // 81 steps in 3 epochs of 27, every 9 steps and every epoch: 9.
        assert_eq!(checkpoints_in(&job, 81), 9);
        let mut rare = job.clone();
        rare.spec.checkpoints.every_steps = Some(50);
        // Steps 27, 50, 54, 81.
        assert_eq!(checkpoints_in(&rare, 81), 4);
    }
}
