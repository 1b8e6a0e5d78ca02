//! The model's shape for the memory plan: its `config.json` when the model is on
//! `s3://` (read with the job's credentials, like its datasets, small and bounded in
//! time), else the built-in table by `spec.baseModel.name`. A shape that cannot be
//! found skips the plan and says why; it never fails the job, since the trainer
//! reports a missing or broken model in its own words.

use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_crds::memory_plan::{ModelShape, known_shape};
use kube::Client;

use crate::config::OperatorConfig;
use crate::error::Result;
use crate::finetunejob::dataset_check::{job_storage_access, read_head_within};
use crate::finetunejob::memory_verdict::ShapeFound;
use crate::finetunejob::storage_access::StorageAccess;

/// A `config.json` is a few kilobytes; anything past this is not one.
pub const CONFIG_JSON_BYTES_MAX: u64 = 1024 * 1024;
/// Time the read may take before the plan falls back to the built-in table: short,
/// since a model bucket the operator cannot reach must not hold a job in Validating.
pub const CONFIG_JSON_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the shape of the job's base model.
pub async fn find_model_shape(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<ShapeFound> {
    let source = job.spec.base_model.source.trim_end_matches('/');
    let why_not_read = if source.starts_with("s3://") {
        let uri = format!("{source}/config.json");
        match job_storage_access(client, job, config).await? {
            StorageAccess::Allowed(settings) => match read_config_json(&uri, settings).await {
                Ok(shape) => return Ok(ShapeFound::ConfigJson(shape)),
                Err(why) => why,
            },
            StorageAccess::Refused(why) => why,
        }
    } else {
        let scheme = source.split("://").next().unwrap_or_default();
        format!("the operator does not read {scheme}:// model sources")
    };
    let name = &job.spec.base_model.name;
    Ok(match known_shape(name) {
        Some(shape) => ShapeFound::BuiltIn(shape),
        None => ShapeFound::Unknown(format!("{name} is not a built-in model and {why_not_read}")),
    })
}

/// The shape in the `config.json` at `uri`, or why there is none.
async fn read_config_json(
    uri: &str,
    settings: Vec<(String, String)>,
) -> std::result::Result<ModelShape, String> {
    match read_head_within(uri, settings, CONFIG_JSON_BYTES_MAX, CONFIG_JSON_TIMEOUT).await {
        Ok(Some((bytes, size))) if size <= CONFIG_JSON_BYTES_MAX => {
            ModelShape::from_config_json(&String::from_utf8_lossy(&bytes))
                .map_err(|error| format!("{uri} gives no shape ({error})"))
        }
        Ok(Some((_, size))) => Err(format!(
            "{uri} is {size} bytes, too large for a config.json"
        )),
        Ok(None) => Err(format!("there is no {uri}")),
        Err(error) => Err(format!("{uri} could not be read ({error})")),
    }
}
