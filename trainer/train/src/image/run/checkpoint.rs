//! An image run's checkpoints: `checkpoints/ckpt-{step}/` holds the adapter in
//! diffusers' FLUX format (`pytorch_lora_weights.safetensors`, which
//! `load_lora_weights`, `trainer generate-image --adapter` and serving read),
//! `optimizer.safetensors`, `trainer_state.json`, and a PNG per sample prompt with
//! `samples.json` naming them; staged locally, uploaded, then marked complete as a
//! chat checkpoint is. Before the first step the base model's samples go to
//! `samples/base/`, the contact sheet's first row.

use anneal_crds::events::{EventBody, LogLevel};
use anneal_crds::finetunejob::CheckpointStatus;
use anneal_image::flux::FluxTransformer;
use anneal_image::flux::lora::LORA_FILE;
use anneal_image::flux::trainable_lora::diffusers_lora_bytes;
use anneal_image::png_out::encode_rgb_png;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::start::{ImageTraining, adapter_params};
use super::{ImageRun, RunOutcome};
use crate::TrainError;
use crate::checkpoint::{CHECKPOINTS, SAMPLES_FILE, checkpoint_name};
use crate::image::samples::draw_samples;
use crate::optimizer_state::{OPTIMIZER_FILE, save_moments};
use crate::run::Deadline;
use crate::run::checkpoint::{prune_and_report, report_deadline, report_stop};
use crate::state::STATE_FILE;

/// Where the untrained model's samples go in the run's output.
pub const BASE_SAMPLES: &str = "samples/base";

/// `samples.json` of an image checkpoint: each prompt and its settings with the file
/// of its image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SampleImage {
    pub prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub guidance: f32,
    pub file: String,
}

/// The file of sample `index` in a checkpoint folder.
pub fn sample_file(index: usize) -> String {
    format!("sample-{index}.png")
}

impl<B: AutodiffBackend> ImageRun<'_, B> {
    /// The sample prompts drawn with `model`, as PNG files.
    fn sample_pngs(&self, model: &FluxTransformer<B>) -> Result<Vec<Vec<u8>>, TrainError> {
        let side = self.prepared.resolution as usize;
        let images = draw_samples(
            &self.prepared.pipeline,
            model,
            &self.prepared.prompts,
            side,
            side,
        )?;
        images
            .iter()
            .map(|rgb| encode_rgb_png(rgb, side, side).map_err(TrainError::from))
            .collect()
    }

    /// The untrained model's samples, stored under [`BASE_SAMPLES`].
    pub(super) fn base_samples(&mut self, model: &FluxTransformer<B>) -> Result<(), TrainError> {
        let output = &self.inputs.location.output;
        for (index, png) in self.sample_pngs(model)?.into_iter().enumerate() {
            output.put(&format!("{BASE_SAMPLES}/{}", sample_file(index)), png)?;
        }
        self.events.emit(EventBody::Log {
            level: LogLevel::Info,
            message: format!(
                "before training: {} sample images at {}",
                self.prepared.prompts.len(),
                output.child(BASE_SAMPLES).uri()
            ),
        });
        Ok(())
    }

    /// Stores a checkpoint at the current step, with sample images when `with_samples`
    /// (every epoch; not when stopping, where time is short), records it in the
    /// state, and prunes old ones.
    pub(super) fn checkpoint(
        &mut self,
        training: &mut ImageTraining<B>,
        with_samples: bool,
    ) -> Result<(), TrainError> {
        let pngs = match with_samples {
            true => self.sample_pngs(&training.model)?,
            false => Vec::new(),
        };
        let output = &self.inputs.location.output;
        let state = &mut training.state;
        let name = checkpoint_name(state.step);
        let folder = format!("{CHECKPOINTS}/{name}");
        let status = CheckpointStatus {
            uri: output.child(&folder).uri().to_owned(),
            name,
            step: state.step,
            epoch: state.epoch,
            valid_loss: None,
            evaluation: Vec::new(),
            samples: (0..pngs.len())
                .map(|i| {
                    output
                        .child(&format!("{folder}/{}", sample_file(i)))
                        .uri()
                        .to_owned()
                })
                .collect(),
        };
        state.checkpoints.push(status.clone());
        self.store(training, &pngs, &folder)?;
        self.events.emit(EventBody::Checkpoint(status));
        let keep = self.inputs.settings.checkpoints.keep;
        prune_and_report(&mut self.events, output, keep, None)?;
        self.events.sync(output)?;
        Ok(())
    }

    /// Writes the adapter, optimizer state, trainer state and `pngs` to `relative`
    /// (a checkpoint's folder, or `final`) in the run's output.
    pub(super) fn store(
        &self,
        training: &mut ImageTraining<B>,
        pngs: &[Vec<u8>],
        relative: &str,
    ) -> Result<(), TrainError> {
        let location = &self.inputs.location;
        let staging = location
            .work_dir
            .join("staging")
            .join(relative.replace('/', "_"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        let write = |file: &str, bytes: &[u8]| {
            let path = staging.join(file);
            std::fs::write(&path, bytes).map_err(|e| TrainError::io(&path, e))
        };
        let targets = &self.prepared.targets;
        let adapter = diffusers_lora_bytes(&mut training.model, targets, &self.prepared.lora)
            .map_err(TrainError::ImageAdapter)?;
        write(LORA_FILE, &adapter)?;
        save_moments(
            &training.optimizer,
            adapter_params(&mut training.model, targets),
            &staging.join(OPTIMIZER_FILE),
        )?;
        write(STATE_FILE, training.state.to_json().as_bytes())?;
        let samples: Vec<SampleImage> = self
            .prepared
            .prompts
            .iter()
            .zip(pngs)
            .enumerate()
            .map(|(index, (prompt, _))| SampleImage {
                prompt: prompt.text.clone(),
                seed: prompt.seed,
                steps: prompt.sampling.steps,
                guidance: prompt.sampling.guidance,
                file: sample_file(index),
            })
            .collect();
        let listing = serde_json::to_string_pretty(&samples).expect("samples serialize");
        write(SAMPLES_FILE, listing.as_bytes())?;
        for (index, png) in pngs.iter().enumerate() {
            write(&sample_file(index), png)?;
        }
        location.output.upload_dir_complete(&staging, relative)?;
        std::fs::remove_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        Ok(())
    }

    /// Checkpoints where the run stands (unless that step already has one) and
    /// returns the failure that ends a run past its deadline.
    pub(super) fn deadline_exceeded(
        mut self,
        mut training: ImageTraining<B>,
        deadline: Deadline,
    ) -> Result<TrainError, TrainError> {
        let state = &training.state;
        let name = checkpoint_name(state.step);
        if state.step > 0 && !state.checkpoints.iter().any(|c| c.name == name) {
            self.checkpoint(&mut training, false)?;
        }
        report_deadline(
            &mut self.events,
            &self.inputs.location.output,
            &training.state,
            deadline,
        )
    }

    /// Checkpoints where the run stands (unless that step already has one) and stops.
    pub(super) fn stop(mut self, mut training: ImageTraining<B>) -> Result<RunOutcome, TrainError> {
        let state = &training.state;
        let name = checkpoint_name(state.step);
        let already = state.checkpoints.iter().any(|c| c.name == name);
        if state.step > 0 && !already {
            self.checkpoint(&mut training, false)?;
        }
        report_stop(
            &mut self.events,
            &self.inputs.location.output,
            &training.state,
            name,
        )
    }
}
