//! Data parallelism on the chosen backend: two LoRA steps on the bundled tiny model,
//! each of two micro-batches (the LoRA step check's four chats, twice: the same
//! shapes, so a GPU compiles no new kernels), once on one device and once on two
//! copies of the model, as a job on several GPUs trains
//! ([`anneal_train::data_parallel`]).
//! The copies share the first GPU, so one GPU proves the path a multi-GPU pod takes
//! (a copy forked onto its device, its gradients moved and summed, the update copied
//! back); the second step's loss shows the copy got the update. Only the order of
//! the sums differs, so the losses and gradient norms agree to rounding.

use std::time::Instant;

use anneal_train::data_parallel::Replicas;
use anneal_train::optimizer::adamw;
use anneal_train::sft::step::sft_step_on;
use anneal_train::tensor_batch::Batch;
use anneal_train::train_backend::{TrainBackendJob, run_training_on};
use burn::tensor::backend::AutodiffBackend;

use super::CheckResult;
use super::lora_step_check::{TinyLora, backend_of, step_settings};

const NAME: &str = "replicas";
const SAMPLES: usize = 4;
/// Relative agreement asked of the two ways: f32 on the CPU; on CUDA the base is bf16,
/// whose sums in another order part by more.
const CPU_TOLERANCE: f64 = 1e-5;
const CUDA_TOLERANCE: f64 = 1e-3;

pub fn check(cuda: bool) -> CheckResult {
    let figures = match run_training_on(backend_of(cuda), 1, TwoWays) {
        Ok(Ok(figures)) => figures,
        Ok(Err(message)) => return CheckResult::fail(NAME, message),
        Err(error) => return CheckResult::fail(NAME, error.to_string()),
    };
    let tolerance = if cuda { CUDA_TOLERANCE } else { CPU_TOLERANCE };
    let gap = figures.largest_gap();
    let [one, two] = &figures.ways;
    let detail = format!(
        "2 copies of anneal-tiny, 2 steps of 2 x {SAMPLES} chats in {:.2} s: losses {:.5}, {:.5} and gradient norms {:.5}, {:.5} against {:.5}, {:.5} and {:.5}, {:.5} on one device ({gap:.1e} apart, at most {tolerance:.0e})",
        figures.seconds,
        two.losses[0],
        two.losses[1],
        two.grad_norms[0],
        two.grad_norms[1],
        one.losses[0],
        one.losses[1],
        one.grad_norms[0],
        one.grad_norms[1],
    );
    // Written so that NaN fails, and a second step that learned nothing too.
    if gap <= tolerance && one.losses[1] < one.losses[0] {
        CheckResult::ok(NAME, detail)
    } else {
        CheckResult::fail(NAME, detail)
    }
}

/// Two steps' losses and gradient norms.
struct Steps {
    losses: [f64; 2],
    grad_norms: [f64; 2],
}

struct Figures {
    /// On one device, then on two copies.
    ways: [Steps; 2],
    /// The two copies' steps.
    seconds: f64,
}

impl Figures {
    /// The largest relative gap between the two ways' figures (NaN when any is NaN).
    fn largest_gap(&self) -> f64 {
        let [one, two] = &self.ways;
        let pairs = one.losses.iter().zip(&two.losses);
        let pairs = pairs.chain(one.grad_norms.iter().zip(&two.grad_norms));
        pairs
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, |largest: f64, gap| {
                if gap.is_nan() {
                    f64::NAN
                } else {
                    largest.max(gap)
                }
            })
    }
}

struct TwoWays;

impl TrainBackendJob for TwoWays {
    type Output = Result<Figures, String>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = devices.into_iter().next().expect("one device");
        let tiny = TinyLora::<B>::load(&device, SAMPLES)?;
        let steps = |copies: usize| {
            let mut replicas = Replicas::new(&tiny.model, &vec![device.clone(); copies]);
            let halves: Vec<Vec<_>> = tiny
                .samples
                .chunks(SAMPLES / 2)
                .map(|c| c.iter().collect())
                .collect();
            let batches: Vec<Batch<B>> = (halves.iter().zip(replicas.assign(halves.len())))
                .map(|(half, replica)| Batch::new(half, replicas.device(replica)))
                .collect();
            let mut optimizer = adamw::<B, _>(0.0);
            let mut model = tiny.model.clone();
            let mut figures = Steps {
                losses: [0.0; 2],
                grad_norms: [0.0; 2],
            };
            for step in 0..2 {
                let stats;
                (model, stats) = sft_step_on(
                    model,
                    &mut optimizer,
                    &batches,
                    step_settings(),
                    &mut replicas,
                );
                figures.losses[step] = stats.loss;
                figures.grad_norms[step] = stats.grad_norm;
            }
            figures
        };
        let one = steps(1);
        let start = Instant::now();
        let two = steps(2);
        Ok(Figures {
            ways: [one, two],
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
