//! How an image run begins: a fresh adapter (B zero, so the first samples are the
//! base model's) and optimizer, or the newest checkpoint's adapter, optimizer moments
//! and state, continuing bit for bit.

use anneal_image::flux::FluxTransformer;
use anneal_image::flux::lora::FluxLora;
use anneal_image::flux::trainable_lora::{attach_saved, attach_trainable};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::ImageRunInputs;
use super::prepare::Prepared;
use crate::TrainError;
use crate::checkpoint::ResumePoint;
use crate::image::step::ImageOptimizer;
use crate::optimizer::adamw;
use crate::optimizer_state::{OPTIMIZER_FILE, TrainedParam, load_moments};
use crate::run::start::state_at_start;
use crate::state::{DataOrder, DatasetNames, TrainerState};

/// The transformer with its adapter, the optimizer, and where the run stands.
pub(super) struct ImageTraining<B: AutodiffBackend> {
    pub model: FluxTransformer<B>,
    pub optimizer: ImageOptimizer<B>,
    pub state: TrainerState,
}

impl<B: AutodiffBackend> ImageTraining<B> {
    /// From step 0, or from `point` (already checked against the job and `order`).
    pub fn start(
        prepared: &Prepared<B>,
        inputs: &ImageRunInputs,
        point: Option<&ResumePoint>,
        order: &DataOrder,
    ) -> Result<Self, TrainError> {
        let weight_decay = inputs.settings.hyperparameters.weight_decay;
        // A handle on the loaded weights, not a copy: the frozen base is shared.
        let base = prepared.pipeline.transformer.clone();
        let Some(point) = point else {
            let model = attach_trainable(base, &prepared.targets, &prepared.lora)
                .map_err(TrainError::ImageAdapter)?;
            let datasets = DatasetNames::of(&inputs.images.name, None);
            return Ok(Self {
                model,
                optimizer: adamw(weight_decay),
                state: state_at_start(
                    &inputs.job,
                    &inputs.base_model.name,
                    &inputs.settings,
                    order,
                    datasets,
                ),
            });
        };
        let saved = FluxLora::read(&point.dir)?;
        let mut model = attach_saved(base, &prepared.targets, &prepared.lora, &saved)
            .map_err(TrainError::ImageAdapter)?;
        let optimizer = load_moments(
            adapter_params(&mut model, &prepared.targets),
            weight_decay,
            &point.dir.join(OPTIMIZER_FILE),
        )?;
        let mut state = point.state.clone();
        state.data = order.clone();
        Ok(Self {
            model,
            optimizer,
            state,
        })
    }
}

/// The adapter's matrices by stable names (`{module path}.lora_A` / `.lora_B`), for
/// the optimizer state file.
pub(super) fn adapter_params<B: Backend>(
    model: &mut FluxTransformer<B>,
    targets: &[String],
) -> Vec<TrainedParam<B::Device>> {
    let mut params = Vec::new();
    for target in targets {
        let Some(lora) = model
            .projection_mut(target)
            .and_then(|projection| projection.lora.as_ref())
        else {
            continue;
        };
        for (which, id) in [("lora_A", lora.a.id), ("lora_B", lora.b.id)] {
            params.push(TrainedParam {
                name: format!("{target}.{which}"),
                id,
                rank: 2,
                device: lora.a.device(),
            });
        }
    }
    params
}
