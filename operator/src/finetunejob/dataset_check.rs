//! The dataset half of the Validating phase: read each dataset the job names (from
//! object storage with the job's credentials, or from its ConfigMap), bounded in
//! size and time, and judge it with the validator the trainer uses, so a bad line
//! fails the job before any GPU is asked for.

use std::collections::BTreeMap;
use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_crds::dataset::{DatasetKind, DatasetLimits, validate_dataset};
use anneal_crds::finetunejob::ConfigMapDataset;
use anneal_crds::storage::AsyncStorage;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::config::OperatorConfig;
use crate::error::{Error, Result};
use crate::finetunejob::image_folder_check::check_image_folder;
use crate::finetunejob::storage_access::{StorageAccess, operator_storage_access};
use crate::finetunejob::trainer_job::credentials_secret;
use crate::finetunejob::validation_verdict::{Verdict, VerdictReason, judge_dataset};

/// Bytes of a dataset the operator reads; the trainer checks the rest as it loads.
pub const DATASET_CHECK_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Time one dataset read may take before the reconcile gives up and retries.
pub const DATASET_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Datasets judged at once across every job the operator validates: with
/// [`DATASET_CHECK_BYTES_MAX`] read of each and the validator's per-line bound, what
/// validation can hold stays within the operator's memory limit.
const DATASET_CHECKS_AT_ONCE: usize = 2;
static DATASET_CHECKS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(DATASET_CHECKS_AT_ONCE);

/// A dataset to judge: a ConfigMap's text, an object to read the head of (each with
/// the kind of lines it holds), or an image folder (its URI and the job's trigger
/// word).
enum DatasetSource {
    Text(String, String, DatasetKind),
    Object(&'static str, String, Vec<(String, String)>, DatasetKind),
    Images(String, Vec<(String, String)>, Option<String>),
}

/// The outcome: judged, or waiting for something the user still has to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetCheck {
    Judged(Verdict),
    /// A Secret or ConfigMap the job names does not exist (yet).
    Waiting(String),
}

/// Checks the training data, the validation data if the job names a file for it, and
/// the held-out chats of `checkpoints.evaluation`.
pub async fn check_datasets(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<DatasetCheck> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let kind = DatasetKind::from(job.spec.method);
    let access = match storage_settings(client, &namespace, job, config).await? {
        Ok(settings) => operator_storage_access(settings, config),
        Err(waiting) => return Ok(DatasetCheck::Waiting(waiting)),
    };
    // Datasets the operator does not read, and why: the trainer checks them as it loads.
    let mut left_to_trainer = None;
    let mut sources = Vec::new();
    let evaluation = job.spec.checkpoints.evaluation.as_ref().map(|e| &e.dataset);
    let config_maps = [
        (
            "spec.dataset.configMap",
            job.spec.dataset.config_map.as_ref(),
            kind,
        ),
        (
            "spec.checkpoints.evaluation.dataset.configMap",
            evaluation.and_then(|d| d.config_map.as_ref()),
            DatasetKind::Evaluation,
        ),
    ];
    for (field, config_map, kind) in config_maps {
        let Some(config_map) = config_map else {
            continue;
        };
        match config_map_text(client, &namespace, field, config_map).await? {
            Ok((source, text)) => sources.push(DatasetSource::Text(source, text, kind)),
            Err(check) => return Ok(check),
        }
    }
    let mixed =
        (job.spec.dataset.mix.iter()).map(|m| ("spec.dataset.mix[].uri", Some(&m.uri), kind));
    let listed = [
        ("spec.dataset.train", job.spec.dataset.train.as_ref(), kind),
        (
            "spec.dataset.validation",
            job.spec.dataset.validation.as_ref(),
            kind,
        ),
        (
            "spec.dataset.images",
            job.spec.dataset.images.as_ref(),
            kind,
        ),
        (
            "spec.checkpoints.evaluation.dataset.uri",
            evaluation.and_then(|d| d.uri.as_ref()),
            DatasetKind::Evaluation,
        ),
    ];
    for (field, uri, kind) in listed.into_iter().chain(mixed) {
        let Some(uri) = uri else { continue };
        if !uri.starts_with("s3://") {
            // pvc:// is mounted in the trainer's pod only; the trainer checks it as it loads.
            continue;
        }
        match &access {
            StorageAccess::Allowed(settings) if field == "spec.dataset.images" => {
                let trigger_word = job.spec.hyperparameters.trigger_word.clone();
                sources.push(DatasetSource::Images(
                    uri.clone(),
                    settings.clone(),
                    trigger_word,
                ));
            }
            StorageAccess::Allowed(settings) => {
                sources.push(DatasetSource::Object(
                    field,
                    uri.clone(),
                    settings.clone(),
                    kind,
                ));
            }
            StorageAccess::Refused(why) => {
                left_to_trainer = Some(format!(
                    "{field} is checked by the trainer as it loads it: {why}"
                ));
            }
        }
    }

    let mut messages = match judge_sources(sources).await? {
        Ok(messages) => messages,
        Err(failed) => return Ok(DatasetCheck::Judged(failed)),
    };
    messages.extend(left_to_trainer);
    let message = if messages.is_empty() {
        "spec is valid; the datasets are checked by the trainer as it loads them".to_owned()
    } else {
        messages.join("; ")
    };
    Ok(DatasetCheck::Judged(Verdict {
        reason: VerdictReason::Valid,
        message,
    }))
}

/// Judges the first bytes of a dataset of `size` bytes; a cut-off last line is left
/// to the trainer rather than reported as broken.
pub fn judge_bytes(source: &str, bytes: &[u8], size: u64, kind: DatasetKind) -> Result<Verdict> {
    let truncated = (bytes.len() as u64) < size;
    let checked = if truncated {
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        &bytes[..end]
    } else {
        bytes
    };
    let report = validate_dataset(checked, kind, &DatasetLimits::default()).map_err(|error| {
        Error::DatasetRead {
            source_name: source.to_owned(),
            error,
        }
    })?;
    let mut verdict = judge_dataset(source, &report);
    if truncated && verdict.passed() {
        verdict.message.push_str(&format!(
            " in the first {} MiB of {} MiB (the trainer checks the rest)",
            checked.len() / (1024 * 1024),
            size.div_ceil(1024 * 1024)
        ));
    }
    Ok(verdict)
}

/// Whether and how the operator may read the job's storage itself (its model's
/// `config.json`, its run's `events.jsonl`), from its credentials Secret; a missing
/// Secret is an error here, since the job validated or ran with it.
pub async fn job_storage_access(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<StorageAccess> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let settings = storage_settings(client, &namespace, job, config)
        .await?
        .map_err(Error::Credentials)?;
    Ok(operator_storage_access(settings, config))
}

/// Storage settings from the job's credentials Secret (the same Secret its pod gets
/// as environment), or why the job has to wait for it.
pub(crate) async fn storage_settings(
    client: &Client,
    namespace: &str,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<Result<Vec<(String, String)>, String>> {
    secret_storage_settings(client, namespace, credentials_secret(job, config)).await
}

/// Storage settings from credentials Secret `name` in `namespace` (none without a
/// Secret), or why whoever names it has to wait for it.
pub(crate) async fn secret_storage_settings(
    client: &Client,
    namespace: &str,
    name: Option<String>,
) -> Result<Result<Vec<(String, String)>, String>> {
    let Some(name) = name else {
        return Ok(Ok(Vec::new()));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = api.get_opt(&name).await? else {
        return Ok(Err(format!(
            "spec.output.credentialsSecret: waiting for Secret {name} in namespace {namespace}"
        )));
    };
    let mut settings = BTreeMap::new();
    for (key, value) in secret.data.unwrap_or_default() {
        settings.insert(key, String::from_utf8_lossy(&value.0).into_owned());
    }
    for (key, value) in secret.string_data.unwrap_or_default() {
        settings.insert(key, value);
    }
    Ok(Ok(settings.into_iter().collect()))
}

/// The first [`DATASET_CHECK_BYTES_MAX`] bytes of an object and its size, within
/// [`DATASET_CHECK_TIMEOUT`].
async fn read_head(uri: &str, settings: Vec<(String, String)>) -> Result<Option<(Vec<u8>, u64)>> {
    read_head_within(
        uri,
        settings,
        DATASET_CHECK_BYTES_MAX,
        DATASET_CHECK_TIMEOUT,
    )
    .await
}

/// The first `max_bytes` of an object and its size; `None` when there is none,
/// bounded by `timeout`.
pub(crate) async fn read_head_within(
    uri: &str,
    settings: Vec<(String, String)>,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Option<(Vec<u8>, u64)>> {
    let (folder, name) = uri.rsplit_once('/').ok_or_else(|| Error::NotAFileUri {
        uri: uri.to_owned(),
    })?;
    let storage = AsyncStorage::open_with(folder, settings)?;
    let read = storage.get_head(name, max_bytes);
    match tokio::time::timeout(timeout, read).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Timeout {
            what: uri.to_owned(),
            limit: timeout,
        }),
    }
}

/// The text of the ConfigMap key a dataset field names and the dataset's name for
/// messages; or the check's outcome when the ConfigMap or its key is missing.
async fn config_map_text(
    client: &Client,
    namespace: &str,
    field: &str,
    config_map: &ConfigMapDataset,
) -> Result<std::result::Result<(String, String), DatasetCheck>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let Some(found) = api.get_opt(&config_map.name).await? else {
        return Ok(Err(DatasetCheck::Waiting(format!(
            "{field}: waiting for ConfigMap {} in namespace {namespace}",
            config_map.name
        ))));
    };
    let source = format!("{field} {}/{}", config_map.name, config_map.key);
    let text = found.data.and_then(|mut data| data.remove(&config_map.key));
    Ok(match text {
        Some(text) => Ok((source, text)),
        None => Err(DatasetCheck::Judged(Verdict {
            reason: VerdictReason::InvalidDataset,
            message: format!("invalid dataset {source}: the ConfigMap has no such key"),
        })),
    })
}

/// Judges each source in turn: the passing verdicts' messages, or the first failing
/// verdict. However many jobs validate at once, at most [`DATASET_CHECKS_AT_ONCE`]
/// datasets are in the operator's memory, each read, judged and dropped before the
/// next.
async fn judge_sources(
    sources: Vec<DatasetSource>,
) -> Result<std::result::Result<Vec<String>, Verdict>> {
    let mut messages = Vec::new();
    for source in sources {
        let _turn = DATASET_CHECKS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let (name, head, kind) = match source {
            DatasetSource::Images(uri, settings, trigger_word) => {
                let verdict = check_image_folder(&uri, settings, trigger_word).await?;
                if !verdict.passed() {
                    return Ok(Err(verdict));
                }
                messages.push(verdict.message);
                continue;
            }
            DatasetSource::Text(name, text, kind) => {
                let size = text.len() as u64;
                (name, Some((text.into_bytes(), size)), kind)
            }
            DatasetSource::Object(field, uri, settings, kind) => {
                let head = read_head(&uri, settings).await?;
                (format!("{field} {uri}"), head, kind)
            }
        };
        let Some((bytes, size)) = head else {
            return Ok(Err(Verdict {
                reason: VerdictReason::InvalidDataset,
                message: format!("invalid dataset {name}: no such object"),
            }));
        };
        // Off the async workers: judging 64 MiB takes a CPU for a while.
        let verdict = tokio::task::spawn_blocking(move || judge_bytes(&name, &bytes, size, kind))
            .await
            .map_err(|error| Error::DatasetCheckPanicked(error.to_string()))??;
        if !verdict.passed() {
            return Ok(Err(verdict));
        }
        messages.push(verdict.message);
    }
    Ok(Ok(messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n";

    #[test]
    fn a_bad_line_is_named() {
        let text = format!("{GOOD}{GOOD}{{\"messages\":[]}}\n");
        let verdict = judge_bytes(
            "spec.dataset.train s3://d/t.jsonl",
            text.as_bytes(),
            text.len() as u64,
            DatasetKind::Sft,
        )
        .unwrap();
        assert_eq!(verdict.reason, VerdictReason::InvalidDataset);
        assert!(
            verdict
                .message
                .starts_with("invalid dataset spec.dataset.train s3://d/t.jsonl: line 3: "),
            "{}",
            verdict.message
        );
    }

    #[test]
    fn a_cut_off_last_line_is_left_to_the_trainer() {
        let text = format!("{GOOD}{GOOD}");
        let cut = &text.as_bytes()[..GOOD.len() + 10];
        let verdict = judge_bytes("train", cut, 200 * 1024 * 1024, DatasetKind::Sft).unwrap();
        assert!(verdict.passed(), "{}", verdict.message);
        assert_eq!(
            verdict.message,
            "train: 1 samples in the first 0 MiB of 200 MiB (the trainer checks the rest)"
        );
    }
}
