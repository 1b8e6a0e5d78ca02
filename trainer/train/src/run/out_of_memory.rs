//! Out of device memory in a step. burn-cuda's allocator fails by panicking (cubecl's
//! "can't allocate buffer" or an out-of-memory launch error); the step runs under
//! `catch_unwind`, and a LoRA run takes the step again once at half the micro-batch,
//! from the weights and optimizer state it had before (clones of tensor handles: the
//! frozen base is shared; the old LoRA weights and moments, 12 bytes a trainable
//! parameter, 0.2 GiB at 7B r8 and 1.2 GiB at 72B, stay alive only through the
//! optimizer update, after the activations that make the step's peak are freed, so the
//! plan's peak does not move). The rest of the run keeps the smaller micro-batch; the samples of every step
//! stay the same. A second failure, or one in full training (whose backup would be
//! another f32 copy of every weight and moment), ends the run with exit 2 and reason
//! `OutOfMemory`, naming the step, the micro-batch and what the memory plan predicted.
//! The host's OOM killer ends the process from outside; the operator reports that one.

use std::any::Any;
use std::fmt;

/// The retry of a step that ran out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Tried again at this micro-batch, which failed too.
    FailedAt(usize),
    /// Not tried: the micro-batch was 1 already.
    NothingToHalve,
    /// Not tried: full training keeps no copy of the weights to retry from.
    FullTraining,
}

/// Where and how a step ran out of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfMemory {
    /// The step (counted from 1).
    pub step: u64,
    /// The micro-batch of the first failure.
    pub micro_batch: usize,
    /// Whether the step was tried again, and at what micro-batch.
    pub retry: Retry,
    /// The micro-batch line the run started with, with the plan's prediction.
    pub plan: String,
    /// The allocator's own words, first line.
    pub detail: String,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "out of memory at step {} with micro-batch {}",
            self.step, self.micro_batch
        )?;
        match self.retry {
            Retry::FailedAt(half) => write!(f, " and again at micro-batch {half}")?,
            Retry::NothingToHalve => write!(f, " (not retried: nothing smaller to try)")?,
            Retry::FullTraining => write!(
                f,
                " (not retried: full training keeps no copy of the weights to retry from)"
            )?,
        }
        write!(
            f,
            "; the run started with {}; the device said: {}; lower hyperparameters.maxTokens or \
             batchSize, or give the job more memory (more GPUs, or a larger --gpu-memory only if \
             the GPUs have it)",
            self.plan, self.detail
        )
    }
}

/// Text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Whether a panic's text is an allocator's out-of-memory failure: cubecl's (CUDA and
/// its CPU runtime) or the CUDA driver's.
pub fn is_out_of_memory(text: &str) -> bool {
    const MARKERS: [&str; 5] = [
        "can't allocate buffer",
        "out-of-memory error",
        "CUDA_ERROR_OUT_OF_MEMORY",
        "out of memory",
        "OutOfMemory",
    ];
    MARKERS.iter().any(|marker| text.contains(marker))
}

/// The first line of an allocator's message, without its backtrace.
pub fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// Half a micro-batch, rounded up; `None` at 1, where there is nothing to halve.
pub fn half(micro_batch: usize) -> Option<usize> {
    (micro_batch > 1).then(|| micro_batch.div_ceil(2))
}

/// Fault injection (`ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH=N`): a step whose micro-batch
/// is larger than N fails as burn-cuda's allocator does, so the retry and the failure
/// after it can be exercised on any backend.
pub fn injected_limit() -> Option<usize> {
    std::env::var("ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH")
        .ok()
        .and_then(|n| n.parse().ok())
}

/// Panics as the allocator would when `micro_batch` is over the injected `limit`.
pub fn inject(limit: Option<usize>, micro_batch: usize) {
    if let Some(limit) = limit
        && micro_batch > limit
    {
        std::panic::panic_any(format!(
            "can't allocate buffer of size: {} (injected by ANNEAL_FAULT_OOM_ABOVE_MICRO_BATCH={limit})",
            micro_batch << 30
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_failures_are_told_from_other_panics() {
        for text in [
            "can't allocate buffer of size: 4294967296\n   0: backtrace",
            "An out-of-memory error happened during launch\nCaused by:\n  pool full",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
        ] {
            assert!(is_out_of_memory(text), "{text}");
        }
        for text in [
            "index out of bounds: the len is 3",
            "shape mismatch [2, 3] [3, 2]",
        ] {
            assert!(!is_out_of_memory(text), "{text}");
        }
        assert_eq!(
            first_line("\n  can't allocate buffer of size: 12\nbacktrace"),
            "can't allocate buffer of size: 12"
        );
        let payload: Box<dyn Any + Send> = Box::new(String::from("formatted 3"));
        assert_eq!(panic_text(payload.as_ref()), "formatted 3");
        let payload: Box<dyn Any + Send> = Box::new("literal");
        assert_eq!(panic_text(payload.as_ref()), "literal");
    }

    #[test]
    fn the_retry_halves_rounding_up_and_stops_at_one() {
        assert_eq!(half(8), Some(4));
        assert_eq!(half(3), Some(2));
        assert_eq!(half(2), Some(1));
        assert_eq!(half(1), None);
    }

    #[test]
    fn the_message_names_step_micro_batch_retry_and_plan() {
        let oom = OutOfMemory {
            step: 7,
            micro_batch: 4,
            retry: Retry::FailedAt(2),
            plan: "micro-batch 4 x 1 accumulation (plan: 26.3 GiB of 80 GiB GPU, memory from --gpu-memory)".into(),
            detail: "can't allocate buffer of size: 1073741824".into(),
        };
        assert_eq!(
            oom.to_string(),
            "out of memory at step 7 with micro-batch 4 and again at micro-batch 2; the run \
             started with micro-batch 4 x 1 accumulation (plan: 26.3 GiB of 80 GiB GPU, memory \
             from --gpu-memory); the device said: can't allocate buffer of size: 1073741824; \
             lower hyperparameters.maxTokens or batchSize, or give the job more memory (more \
             GPUs, or a larger --gpu-memory only if the GPUs have it)"
        );
    }
}
