//! The model's shape for the memory plan: its `config.json` when the model is on
//! `s3://` (read with the job's credentials, like its datasets, small and bounded in
//! time) or on a model hub (read through the hub check, which also proves the
//! repository, revision and token), else the built-in table by
//! `spec.baseModel.name`. A shape that cannot be found skips the plan and says why; it
//! never fails the job, since the trainer reports a missing or broken model in its own
//! words. A hub model that does not exist or cannot be read does fail it, in
//! Validating, naming the field.

use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_crds::hub::HubRef;
use anneal_crds::memory_plan::{ModelShape, known_shape};
use kube::Client;

use crate::config::OperatorConfig;
use crate::error::Result;
use crate::finetunejob::dataset_check::{job_storage_access, read_head_within, storage_settings};
use crate::finetunejob::memory_verdict::ShapeFound;
use crate::finetunejob::storage_access::StorageAccess;
use crate::finetunejob::trainer_job::base_model_source;
use crate::shared::hub_check::{HubCheck, check_hub_model, operator_hub_settings};

/// A `config.json` is a few kilobytes; anything past this is not one.
pub const CONFIG_JSON_BYTES_MAX: u64 = 1024 * 1024;
/// Time the read may take before the plan falls back to the built-in table: short,
/// since a model bucket the operator cannot reach must not hold a job in Validating.
pub const CONFIG_JSON_TIMEOUT: Duration = Duration::from_secs(10);

/// The model source as the Validating phase judges it.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSourceCheck {
    /// The model can be read (as far as the operator looks); its shape.
    Passed(ShapeFound),
    /// A hub repository, revision or access that is wrong; the message names the field.
    Refused(String),
    /// A hub that does not answer, or a credentials Secret not there yet.
    Waiting(String),
}

/// Checks the job's base model: for a hub model, that it exists at its revision and
/// the job's token can read it; and finds its shape.
pub async fn check_model_source(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<ModelSourceCheck> {
    let field = "spec.baseModel.source";
    let source = match base_model_source(job) {
        Ok(source) => source,
        Err(problem) => return Ok(ModelSourceCheck::Refused(problem.to_string())),
    };
    let source = source.trim_end_matches('/');
    let why_not_read = if let Some(Ok(reference)) = HubRef::parse(source) {
        let namespace = job.metadata.namespace.clone().unwrap_or_default();
        let secret = match storage_settings(client, &namespace, job, config).await? {
            Ok(settings) => settings,
            Err(waiting) => return Ok(ModelSourceCheck::Waiting(waiting)),
        };
        let settings = operator_hub_settings(&reference, &secret, config);
        match check_hub_model(field, &reference, settings).await {
            HubCheck::Readable {
                shape: Ok(shape), ..
            } => {
                return Ok(ModelSourceCheck::Passed(ShapeFound::ConfigJson(shape)));
            }
            HubCheck::Readable {
                shape: Err(why), ..
            } => why,
            HubCheck::Refused(message) => return Ok(ModelSourceCheck::Refused(message)),
            HubCheck::Unreachable(message) => return Ok(ModelSourceCheck::Waiting(message)),
        }
    } else if source.starts_with("s3://") {
        let uri = format!("{source}/config.json");
        match job_storage_access(client, job, config).await? {
            StorageAccess::Allowed(settings) => match read_config_json(&uri, settings).await {
                Ok(shape) => return Ok(ModelSourceCheck::Passed(ShapeFound::ConfigJson(shape))),
                Err(why) => why,
            },
            StorageAccess::Refused(why) => why,
        }
    } else {
        let scheme = source.split("://").next().unwrap_or_default();
        format!("the operator does not read {scheme}:// model sources")
    };
    let name = &job.spec.base_model.name;
    Ok(ModelSourceCheck::Passed(match known_shape(name) {
        Some(shape) => ShapeFound::BuiltIn(shape),
        None => ShapeFound::Unknown(format!("{name} is not a built-in model and {why_not_read}")),
    }))
}

/// Finds the shape of the job's base model (for plans made after Validating).
pub async fn find_model_shape(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<ShapeFound> {
    Ok(match check_model_source(client, job, config).await? {
        ModelSourceCheck::Passed(shape) => shape,
        ModelSourceCheck::Refused(why) | ModelSourceCheck::Waiting(why) => {
            match known_shape(&job.spec.base_model.name) {
                Some(shape) => ShapeFound::BuiltIn(shape),
                None => ShapeFound::Unknown(why),
            }
        }
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
