//! What a training job will take before it starts: its tokens and steps, the
//! floating-point operations of its optimizer steps (a FLOPs model of the decoder),
//! the time those take on the job's devices at a stated utilization, and the cost at
//! a price per GPU-hour. Pure arithmetic, shared by `trainer plan` and the operator.
//!
//! The FLOPs model counts matrix products only, as MFU figures do: per position a
//! forward pass is `2 × (projection and head weights)` plus causal attention,
//! `4 × layers × query width × (keys seen)`, where a sample of `n` positions sees
//! `(n + 1) / 2` keys per query on average. A step then runs, per position:
//!
//! | training | passes of the forward's work |
//! |---|---|
//! | LoRA | 2 (forward, backward to the inputs: the frozen weights get no gradient) |
//! | full | 3 (forward, backward to the inputs and to the weights) |
//! | with gradient checkpointing | one forward more (each layer recomputed) |
//! | DPO | the above for chosen and rejected replies, plus one forward of each for the reference |
//!
//! LoRA's own products (rank `r` against `hidden`) are under 1% at the ranks jobs use
//! and left out. Checkpoints, validation, sample answers and loading are not steps:
//! the estimate is the training steps' time.

use crate::finetunejob::{TrainingMethod, TrainingType};
use crate::memory_plan::ModelShape;

/// The tokens one epoch trains on, after the chat template: what the FLOPs grow with.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EpochTokens {
    /// Samples (SFT chats, or DPO pairs) in an epoch.
    pub samples: u64,
    /// Input positions of all of them (a DPO pair's chosen and rejected together).
    pub positions: u64,
    /// The sum over sequences of `positions²`: attention grows with it.
    pub positions_squared: f64,
}

impl EpochTokens {
    /// Adds one sequence of `positions` input positions (a new sample when
    /// `new_sample`: a DPO pair adds its chosen reply as one and its rejected as not).
    pub fn add(&mut self, positions: u64, new_sample: bool) {
        self.samples += u64::from(new_sample);
        self.positions += positions;
        self.positions_squared += (positions as f64).powi(2);
    }

    /// These tokens scaled to `samples` samples of the same mean length (a held-out
    /// share, or a mixed set's draws per epoch).
    pub fn scaled_to(&self, samples: u64) -> Self {
        let factor = samples as f64 / self.samples.max(1) as f64;
        Self {
            samples,
            positions: (self.positions as f64 * factor).round() as u64,
            positions_squared: self.positions_squared * factor,
        }
    }

    pub fn plus(&self, other: &Self) -> Self {
        Self {
            samples: self.samples + other.samples,
            positions: self.positions + other.positions,
            positions_squared: self.positions_squared + other.positions_squared,
        }
    }
}

/// What the job trains: enough to count its work.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainingWork {
    pub shape: ModelShape,
    pub method: TrainingMethod,
    pub training: TrainingType,
    pub gradient_checkpointing: bool,
    pub epochs: u32,
    pub batch_size: u32,
    pub per_epoch: EpochTokens,
}

impl TrainingWork {
    /// The work of `job` on a model of `shape`, with `per_epoch` tokens an epoch.
    pub fn of_job(job: &crate::FineTuneJob, shape: ModelShape, per_epoch: EpochTokens) -> Self {
        let h = job.resolved_hyperparameters();
        Self {
            shape,
            method: job.spec.method,
            training: job.spec.training,
            gradient_checkpointing: h.gradient_checkpointing,
            epochs: h.epochs,
            batch_size: h.batch_size,
            per_epoch,
        }
    }

    /// Optimizer steps: an epoch's samples in steps of `batchSize`, every epoch.
    pub fn steps(&self) -> u64 {
        self.per_epoch
            .samples
            .div_ceil(u64::from(self.batch_size.max(1)))
            * u64::from(self.epochs)
    }

    /// Tokens the run trains on, all epochs.
    pub fn tokens(&self) -> u64 {
        self.per_epoch.positions * u64::from(self.epochs)
    }

    /// One forward pass's FLOPs over an epoch's sequences.
    pub fn forward_flops_per_epoch(&self) -> f64 {
        let shape = &self.shape;
        let projections: u64 = shape.linears().iter().map(|l| l.inputs * l.outputs).sum();
        let weights = shape.layers * projections + shape.hidden_size * shape.vocab_size;
        let dense = 2.0 * weights as f64 * self.per_epoch.positions as f64;
        // Σ over sequences of n·(n + 1)/2 keys seen, 4 FLOPs per key and query width
        // (the scores and the weighted values).
        let keys_seen = (self.per_epoch.positions_squared + self.per_epoch.positions as f64) / 2.0;
        let attention = 4.0 * (shape.layers * shape.query_width()) as f64 * keys_seen;
        dense + attention
    }

    /// Forward passes' worth of work per trained position (see the module's table).
    pub fn passes(&self) -> f64 {
        let backward = match self.training {
            TrainingType::Lora => 1.0,
            TrainingType::Full => 2.0,
        };
        let recompute = if self.gradient_checkpointing {
            1.0
        } else {
            0.0
        };
        let policy = 1.0 + backward + recompute;
        match self.method {
            TrainingMethod::Sft => policy,
            // The reference model's forward pass over the same sequences.
            TrainingMethod::Dpo => policy + 1.0,
        }
    }

    /// All the run's training FLOPs.
    pub fn flops(&self) -> f64 {
        self.forward_flops_per_epoch() * self.passes() * f64::from(self.epochs)
    }
}

/// Where the steps run: `devices` of `peak_flops` each, at `utilization` of it (the
/// model FLOPs utilization the estimate assumes), `computing` of them at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// The devices the job holds, each billed for the whole run.
    pub devices: u32,
    /// Those computing at the same time: all of them data-parallel, one when the
    /// model's layers are placed across them (a pipeline without overlap).
    pub computing: u32,
    pub peak_flops: f64,
    pub utilization: f64,
}

impl Throughput {
    /// `devices` that all compute at once.
    pub fn parallel(devices: u32, peak_flops: f64, utilization: f64) -> Self {
        Throughput {
            devices,
            computing: devices,
            peak_flops,
            utilization,
        }
    }

    /// FLOPs per second the computing devices reach together.
    pub fn flops_per_second(&self) -> f64 {
        f64::from(self.computing.max(1)) * self.peak_flops * self.utilization
    }
}

/// The estimate of one job.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub tokens: u64,
    pub steps: u64,
    pub flops: f64,
    pub seconds: f64,
    /// GPU-hours (devices × hours); 0 on the CPU.
    pub gpu_hours: f64,
    /// At the price per GPU-hour, when one is given.
    pub cost: Option<f64>,
}

/// The estimate of `work` on `throughput`, its GPUs at `price_per_gpu_hour` (none on
/// the CPU).
pub fn estimate(
    work: &TrainingWork,
    throughput: &Throughput,
    gpus: bool,
    price_per_gpu_hour: Option<f64>,
) -> Estimate {
    let flops = work.flops();
    let seconds = flops / throughput.flops_per_second().max(1.0);
    let gpu_hours = if gpus {
        f64::from(throughput.devices) * seconds / 3600.0
    } else {
        0.0
    };
    Estimate {
        tokens: work.tokens(),
        steps: work.steps(),
        flops,
        seconds,
        gpu_hours,
        cost: price_per_gpu_hour
            .filter(|_| gpus)
            .map(|price| price * gpu_hours),
    }
}

/// `95 s`, `12 min`, `3 h 20 min`, `2 d 5 h`: as precise as a forecast is.
pub fn rough_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", (s + 30) / 60),
        7200..172_800 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests;
