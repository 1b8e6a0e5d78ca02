//! What a local run's playground can chat with, and the `trainer serve` that answers
//! for it: each complete checkpoint under its model id (`ft:{base}:{job}:ckpt-N`),
//! the result in `final/` when no checkpoint already has its id, and the base model
//! the run's `job.yaml` names.
//!
//! A LoRA run is served as one base model with every adapter beside it (a r8 adapter
//! of a 7B model is ~40 MB, so trying all checkpoints costs one copy of the base
//! weights: ~15 GiB in bf16 at 7B, ~135 GiB at 72B). A full fine-tuning run's
//! checkpoints are whole models, so only the one chosen is served.

use std::path::{Path, PathBuf};

use anneal_console::runs::{RunKey, read_run};
use anneal_crds::finetunejob::{Task, TrainingType, fine_tuned_model_id};
use anneal_crds::manifest::parse_finetunejob;
use anneal_crds::storage::Storage;
use anneal_train::checkpoint::{CHECKPOINTS, FINAL, complete_checkpoints};

use crate::train_command::JOB_FILE;

/// One model of the run the playground offers.
#[derive(Clone, Debug, PartialEq)]
pub struct RunModel {
    /// The name clients ask for.
    pub id: String,
    /// Its folder: an adapter (LoRA) or a whole model (full fine-tuning); none for the
    /// base model.
    pub folder: Option<PathBuf>,
}

/// A local run's models, newest checkpoint first, the base model last.
#[derive(Clone, Debug, PartialEq)]
pub struct RunModels {
    /// Where the run is (the server answering for it is known by this).
    pub folder: PathBuf,
    pub training: TrainingType,
    /// `spec.baseModel.source` as the run recorded it (absolute, or a hub or s3 URI).
    pub base_source: String,
    pub base_name: String,
    pub models: Vec<RunModel>,
}

impl RunModels {
    /// The run at `key` below `root`, or why its playground cannot be offered.
    pub fn read(root: &Path, key: &RunKey) -> Result<Self, String> {
        let folder = key.folder(root);
        let text = std::fs::read_to_string(folder.join(JOB_FILE)).map_err(|_| {
            format!("the run has no {JOB_FILE} (written by an older trainer): train it again to try it here")
        })?;
        let job = parse_finetunejob(&text).map_err(|e| format!("the run's {JOB_FILE}: {e}"))?;
        if job.spec.task == Task::TextToImage {
            return Err(
                "an image job: draw with its adapter through trainer generate-image".to_owned(),
            );
        }
        let base_name = job.spec.base_model.name.clone();
        let base_source = job.spec.base_model.source_uri().unwrap_or_default();
        let storage_uri = format!("file://{}", folder.display());
        let run = Storage::open(&storage_uri).map_err(|e| format!("{storage_uri}: {e}"))?;
        let checkpoints = complete_checkpoints(&run).map_err(|e| e.to_string())?;
        let job_name = &key.job;
        let mut models: Vec<RunModel> = checkpoints
            .iter()
            .rev()
            .map(|name| RunModel {
                id: fine_tuned_model_id(&base_name, job_name, name),
                folder: Some(folder.join(CHECKPOINTS).join(name)),
            })
            .collect();
        let result_id = read_run(root, key).and_then(|summary| summary.model_id);
        let final_complete = run.is_complete(FINAL).unwrap_or(false);
        if let Some(id) =
            result_id.filter(|id| final_complete && !models.iter().any(|m| &m.id == id))
        {
            models.insert(
                0,
                RunModel {
                    id,
                    folder: Some(folder.join(FINAL)),
                },
            );
        }
        models.push(RunModel {
            id: base_name.clone(),
            folder: None,
        });
        Ok(Self {
            folder,
            training: job.spec.training,
            base_source,
            base_name,
            models,
        })
    }

    /// The model ids, as the playground lists them.
    pub fn ids(&self) -> Vec<String> {
        self.models.iter().map(|m| m.id.clone()).collect()
    }

    /// The id of the checkpoint folder `name` (`ckpt-N` or `final`), if it is served.
    pub fn id_of_folder(&self, name: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|m| {
                m.folder
                    .as_deref()
                    .and_then(Path::file_name)
                    .is_some_and(|f| f == name)
            })
            .map(|m| m.id.as_str())
    }

    /// The `trainer serve` arguments of a server that answers for `chosen` (one of
    /// [`Self::ids`]), on a free loopback port, and the ids it will answer to.
    pub fn serve_args(&self, chosen: &str) -> Option<(Vec<String>, Vec<String>)> {
        let model = self.models.iter().find(|m| m.id == chosen)?;
        let mut args: Vec<String> = vec!["serve".into()];
        let mut served = Vec::new();
        match (self.training, &model.folder) {
            (TrainingType::Full, Some(folder)) => {
                args.extend(["--model".into(), folder.display().to_string()]);
                args.extend(["--served-model-name".into(), model.id.clone()]);
                served.push(model.id.clone());
            }
            _ => {
                args.extend(["--model".into(), self.base_source.clone()]);
                args.extend(["--served-model-name".into(), self.base_name.clone()]);
                served.push(self.base_name.clone());
                if self.training == TrainingType::Lora {
                    for adapter in &self.models {
                        if let Some(folder) = &adapter.folder {
                            args.extend([
                                "--adapter".into(),
                                format!("{}={}", adapter.id, folder.display()),
                            ]);
                            served.push(adapter.id.clone());
                        }
                    }
                }
            }
        }
        args.extend([
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
        ]);
        Some((args, served))
    }
}
