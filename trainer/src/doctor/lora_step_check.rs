//! One LoRA training step on the bundled tiny model, on the chosen backend: the
//! forward pass, the chunked loss, backward and AdamW, as `trainer train` runs them.
//! The loss before the step shows the weights loaded (the trained model predicts its
//! own house style far better than a uniform guess over the vocabulary); the loss on
//! the same batch after the step shows the gradients and the optimizer work.

use std::time::Instant;

use anneal_crds::hyperparameters::TargetModule;
use anneal_model::backend::{DeviceChoice, compute_dtype};
use anneal_model::chat::ModelTokenizer;
use anneal_model::llm::{CausalLm, load_model};
use anneal_model::lora::{LoraSettings, attach};
use anneal_train::backward::LayerActivations;
use anneal_train::optimizer::adamw;
use anneal_train::sft::data::prepare;
use anneal_train::sft::step::sft_step;
use anneal_train::step_settings::StepSettings;
use anneal_train::tensor_batch::Batch;
use anneal_train::tokenized::TokenizedSample;
use anneal_train::train_backend::{TrainBackendJob, run_training_on};
use burn::tensor::backend::AutodiffBackend;

use super::{CheckResult, tiny_model};

const NAME: &str = "lora step";
/// Chats of the quick start's dataset in the one micro-batch.
const SAMPLES: usize = 4;
/// Large enough that one step visibly lowers the loss on its own batch.
const LEARNING_RATE: f64 = 1e-2;
const RANK: usize = 8;

pub fn check(cuda: bool) -> CheckResult {
    let step = match run_training_on(backend_of(cuda), 1, LoraStep) {
        Ok(Ok(step)) => step,
        Ok(Err(message)) => return CheckResult::fail(NAME, message),
        Err(error) => return CheckResult::fail(NAME, error.to_string()),
    };
    let uniform = (step.vocab as f64).ln();
    let detail = format!(
        "anneal-tiny, LoRA r{RANK} on all 7 projections, {SAMPLES} chats ({} positions, {} trained tokens) in {:.2} s: loss {:.4} -> {:.4} on the same batch after the step (before must be below ln(vocab) = {uniform:.2}, after below before)",
        step.positions, step.trained_tokens, step.seconds, step.loss_before, step.loss_after
    );
    // Written so that NaN fails: every comparison with it is false.
    if step.loss_before < uniform && step.loss_after < step.loss_before {
        CheckResult::ok(NAME, detail)
    } else {
        CheckResult::fail(NAME, detail)
    }
}

struct StepFigures {
    vocab: usize,
    positions: usize,
    trained_tokens: usize,
    seconds: f64,
    loss_before: f64,
    loss_after: f64,
}

struct LoraStep;

impl TrainBackendJob for LoraStep {
    type Output = Result<StepFigures, String>;

    fn run<B: AutodiffBackend>(self, devices: Vec<B::Device>) -> Self::Output {
        let device = devices.into_iter().next().expect("one device");
        let TinyLora {
            vocab,
            model,
            samples,
        } = TinyLora::<B>::load(&device, SAMPLES)?;
        let mut optimizer = adamw::<B, _>(0.0);
        let batch = || [Batch::new(&samples.iter().collect::<Vec<_>>(), &device)];
        // As `trainer train` steps by default: each layer recomputed in the backward pass.
        let step = step_settings();

        let start = Instant::now();
        let (model, before) = sft_step(model, &mut optimizer, &batch(), step);
        let seconds = start.elapsed().as_secs_f64();
        // The second step's loss is computed before its update: the loss after one step.
        let (_, after) = sft_step(model, &mut optimizer, &batch(), step);
        Ok(StepFigures {
            vocab,
            positions: before.positions,
            trained_tokens: before.trained_tokens,
            seconds,
            loss_before: before.loss,
            loss_after: after.loss,
        })
    }
}

/// The backend a check runs on: CUDA or the CPU.
pub(crate) fn backend_of(cuda: bool) -> DeviceChoice {
    match cuda {
        true => DeviceChoice::Cuda,
        false => DeviceChoice::Cpu,
    }
}

/// As `trainer train` steps by default: each layer recomputed in the backward pass.
pub(crate) fn step_settings() -> StepSettings {
    StepSettings {
        learning_rate: LEARNING_RATE,
        max_grad_norm: 1.0,
        activations: LayerActivations::Recomputed,
    }
}

/// The bundled tiny model with a fresh LoRA r8 on every projection (no dropout), and
/// the first chats of its house style, tokenized.
pub(crate) struct TinyLora<B: AutodiffBackend> {
    pub vocab: usize,
    pub model: CausalLm<B>,
    pub samples: Vec<TokenizedSample>,
}

impl<B: AutodiffBackend> TinyLora<B> {
    pub fn load(device: &B::Device, chats: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        tiny_model::write_model(dir.path())
            .map_err(|e| format!("writing the tiny model to {}: {e}", dir.path().display()))?;
        // The frozen base in the dtype `trainer train` keeps it in (bf16 on CUDA).
        let (config, model) =
            load_model::<B>(dir.path(), device, compute_dtype::<B>()).map_err(|e| e.to_string())?;
        let tokenizer = ModelTokenizer::from_model_dir(dir.path(), &config.architecture)
            .map_err(|e| e.to_string())?;
        let chats = tiny_model::chats(chats);
        let samples = prepare(chats.as_bytes(), &tokenizer, 1024)
            .map_err(|e| e.to_string())?
            .samples;
        let settings = LoraSettings {
            rank: RANK,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: TargetModule::ALL.to_vec(),
            use_rslora: false,
            seed: 0,
        };
        Ok(TinyLora {
            vocab: config.vocab_size,
            model: attach(model, &settings),
            samples,
        })
    }
}
