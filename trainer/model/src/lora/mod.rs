//! LoRA on a loaded model: attaching adapters to the target projections with the
//! base weights frozen, merging them into the base for plain inference, and
//! reading and writing them in the PEFT format (see [`peft`]), and serving several
//! of them in one decoding step (see [`bank`]); merging an adapter folder into its
//! base folder on disk, tensor by tensor ([`merge_folder`]).

pub mod bank;
pub mod merge_folder;
pub mod peft;

use anneal_crds::hyperparameters::{ResolvedHyperparameters, TargetModule, lora_scale};
use burn::module::Param;
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::DType;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::llm::CausalLm;
use crate::llm::precision::cast;
use crate::llm::projection::{LoraAdapter, Projection};

/// The adapter's shape, from the job's resolved hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraSettings {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub target_modules: Vec<TargetModule>,
    pub use_rslora: bool,
    pub seed: u64,
}

impl From<&ResolvedHyperparameters> for LoraSettings {
    fn from(h: &ResolvedHyperparameters) -> Self {
        Self {
            rank: h.lora_rank as usize,
            alpha: f64::from(h.lora_alpha),
            dropout: h.lora_dropout,
            target_modules: h.target_modules.clone(),
            use_rslora: h.use_rslora,
            seed: h.seed,
        }
    }
}

impl LoraSettings {
    pub fn scale(&self) -> f64 {
        lora_scale(self.alpha, self.rank, self.use_rslora)
    }
}

/// Every projection of a model with its layer index and module name, in a fixed order.
pub fn projections_mut<B: Backend>(
    model: &mut CausalLm<B>,
) -> Vec<(usize, TargetModule, &mut Projection<B>)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter_mut().enumerate() {
        let attn = &mut layer.self_attn;
        let mlp = &mut layer.mlp;
        out.push((i, TargetModule::QProj, &mut attn.q_proj));
        out.push((i, TargetModule::KProj, &mut attn.k_proj));
        out.push((i, TargetModule::VProj, &mut attn.v_proj));
        out.push((i, TargetModule::OProj, &mut attn.o_proj));
        out.push((i, TargetModule::GateProj, &mut mlp.gate_proj));
        out.push((i, TargetModule::UpProj, &mut mlp.up_proj));
        out.push((i, TargetModule::DownProj, &mut mlp.down_proj));
    }
    out
}

/// Every projection of a model with its layer index and module name, in the order of
/// [`projections_mut`].
pub fn projections<B: Backend>(model: &CausalLm<B>) -> Vec<(usize, TargetModule, &Projection<B>)> {
    let mut out = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let (attn, mlp) = (&layer.self_attn, &layer.mlp);
        out.push((i, TargetModule::QProj, &attn.q_proj));
        out.push((i, TargetModule::KProj, &attn.k_proj));
        out.push((i, TargetModule::VProj, &attn.v_proj));
        out.push((i, TargetModule::OProj, &attn.o_proj));
        out.push((i, TargetModule::GateProj, &mlp.gate_proj));
        out.push((i, TargetModule::UpProj, &mlp.up_proj));
        out.push((i, TargetModule::DownProj, &mlp.down_proj));
    }
    out
}

/// Freezes every base weight and attaches a fresh adapter to each target projection:
/// A drawn as PEFT does (uniform in ±1/sqrt(in)), B zero, so the model's output is
/// unchanged until training moves B. Draws come from a seeded RNG per projection,
/// so the same seed gives the same adapter on any backend. Each adapter is made on
/// its projection's device (the layers may be placed on several).
pub fn attach<B: Backend>(model: CausalLm<B>, settings: &LoraSettings) -> CausalLm<B> {
    let mut model = model.no_grad();
    for (layer, module, projection) in projections_mut(&mut model) {
        if !settings.target_modules.contains(&module) {
            continue;
        }
        let [input, output] = projection.base.weight.dims();
        let device = &projection.base.weight.device();
        let mut rng = StdRng::seed_from_u64(projection_seed(settings.seed, layer, module));
        let bound = 1.0 / (input as f32).sqrt();
        let a: Vec<f32> = (0..input * settings.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        // f32 whatever the base's dtype: the adapter, its gradients and AdamW's
        // moments are the trained state.
        projection.lora = Some(LoraAdapter {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(a, [input, settings.rank]),
                (device, DType::F32),
            )),
            b: Param::from_tensor(Tensor::zeros([settings.rank, output], (device, DType::F32))),
            scale: settings.scale(),
            dropout: Dropout {
                prob: settings.dropout,
            },
        });
    }
    model
}

/// A seed per (layer, module) so adapters do not depend on the order they are made in.
fn projection_seed(seed: u64, layer: usize, module: TargetModule) -> u64 {
    let module_index = TargetModule::ALL
        .iter()
        .position(|m| *m == module)
        .unwrap_or(0) as u64;
    seed ^ (layer as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (module_index + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Folds every adapter into its base weight (`W + s·A·B`) and removes it: the same
/// function, at the cost of a plain model.
pub fn merge<B: Backend>(mut model: CausalLm<B>) -> CausalLm<B> {
    for (_, _, projection) in projections_mut(&mut model) {
        if let Some(lora) = projection.lora.take() {
            let delta = lora.a.val().matmul(lora.b.val()) * lora.scale; // [in, out], f32
            let weight = projection.base.weight.val();
            // Rounded once into the base's dtype (bf16 on CUDA).
            let weight = weight.clone() + cast(delta, weight.dtype());
            projection.base.weight = Param::from_tensor(weight).set_require_grad(false);
        }
    }
    model
}
