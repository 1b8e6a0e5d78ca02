//! The end of an image run: `final/` (the last checkpoint's adapter and samples),
//! the loss chart, the contact sheet (the base model's samples, then every epoch's,
//! one row each, a column per prompt), and the succeeded phase with the result.

use anneal_crds::events::EventBody;
use anneal_crds::finetunejob::{JobPhase, JobResult, fine_tuned_model_id};
use anneal_image::png_out::{contact_sheet, encode_rgb_png};
use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::{BASE_SAMPLES, sample_file};
use super::start::ImageTraining;
use super::{ImageRun, RunOutcome};
use crate::checkpoint::{CHECKPOINTS, FINAL};
use crate::loss_chart::{CHART_FILE, loss_chart_svg};
use crate::state::TrainerState;
use crate::{ResumeError, TrainError};

/// The contact sheet's name in the run's output.
pub const CONTACT_SHEET: &str = "samples.png";

/// White pixels between and around the contact sheet's images.
const SHEET_GAP: usize = 4;

impl<B: AutodiffBackend> ImageRun<'_, B> {
    /// Writes `final/`, the loss chart, the contact sheet and the result.
    pub(super) fn finish(
        mut self,
        mut training: ImageTraining<B>,
    ) -> Result<RunOutcome, TrainError> {
        let last = training
            .state
            .checkpoints
            .last()
            .cloned()
            .ok_or(ResumeError::NoCheckpoint)?;
        // The last step always checkpoints with samples: they are the final adapter's.
        let pngs = self.stored_samples(&format!("{CHECKPOINTS}/{}", last.name))?;
        self.store(&mut training, &pngs, FINAL)?;
        let output = &self.inputs.location.output;
        let state = training.state;
        let title = format!("{} ({})", self.inputs.job.job_name, self.inputs.job.run_id);
        output.put(
            CHART_FILE,
            loss_chart_svg(&state.log_history, &title)?.into_bytes(),
        )?;
        if let Some(sheet) = self.contact_sheet(&state)? {
            output.put(CONTACT_SHEET, sheet)?;
        }
        let result = JobResult {
            model_id: fine_tuned_model_id(
                &self.inputs.base_model.name,
                &self.inputs.job.job_name,
                &last.name,
            ),
            uri: output.child(FINAL).uri().to_owned(),
            stopped_early: None,
        };
        self.events.emit(EventBody::Phase {
            phase: JobPhase::Succeeded,
            message: Some(format!(
                "trained {} steps; final adapter at {}; samples of every epoch in {}",
                state.step,
                result.uri,
                output.child(CONTACT_SHEET).uri()
            )),
            result: Some(result.clone()),
        });
        self.events.sync(output)?;
        Ok(RunOutcome::Finished {
            result,
            state: Box::new(state),
        })
    }

    /// The sample PNGs stored in `folder`, in prompt order (none where a file is gone).
    fn stored_samples(&self, folder: &str) -> Result<Vec<Vec<u8>>, TrainError> {
        let output = &self.inputs.location.output;
        let mut pngs = Vec::new();
        for index in 0..self.prepared.prompts.len() {
            match output.get(&format!("{folder}/{}", sample_file(index)))? {
                Some(png) => pngs.push(png),
                None => return Ok(Vec::new()),
            }
        }
        Ok(pngs)
    }

    /// The base model's samples and each checkpoint's that are still stored, a row
    /// each, as one PNG; `None` when there are none.
    fn contact_sheet(&self, state: &TrainerState) -> Result<Option<Vec<u8>>, TrainError> {
        let mut folders = vec![BASE_SAMPLES.to_owned()];
        folders.extend(
            state
                .checkpoints
                .iter()
                .filter(|c| !c.samples.is_empty())
                .map(|c| format!("{CHECKPOINTS}/{}", c.name)),
        );
        let side = self.prepared.resolution as usize;
        let mut rows = Vec::new();
        for folder in folders {
            let pngs = self.stored_samples(&folder)?;
            let row: Vec<Vec<u8>> = pngs
                .iter()
                .filter_map(|png| image::load_from_memory(png).ok())
                .map(|decoded| decoded.to_rgb8())
                .filter(|rgb| rgb.dimensions() == (side as u32, side as u32))
                .map(image::RgbImage::into_raw)
                .collect();
            if !row.is_empty() {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let sheet = contact_sheet(&rows, side, side, SHEET_GAP);
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        let (width, height) = (
            columns * (side + SHEET_GAP) + SHEET_GAP,
            rows.len() * (side + SHEET_GAP) + SHEET_GAP,
        );
        Ok(Some(encode_rgb_png(&sheet, width, height)?))
    }
}
