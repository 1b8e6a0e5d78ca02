//! The operator's look at a hub model before any pod is scheduled: the repository and
//! revision exist, the token can download its files (a gated model lists them to
//! anyone), and its `config.json` gives the shape the memory and disk plans need.
//!
//! The operator connects only to the install's hub endpoints (`--hf-endpoint`,
//! `--modelscope-endpoint`, else the public hubs), never to one a tenant's Secret
//! names, and takes only the token keys from that Secret.

use std::time::Duration;

use anneal_crds::hub::{HubClient, HubError, HubRef, HubSettings};
use anneal_crds::memory_plan::ModelShape;

use crate::config::OperatorConfig;

/// Time the whole check may take before the hub counts as unreachable for now.
pub const HUB_CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// A `config.json` is a few kilobytes; anything past this is not one.
const CONFIG_JSON_BYTES_MAX: u64 = 1024 * 1024;
/// Keys of a credentials Secret the operator's hub client takes.
const TOKEN_KEYS: [&str; 3] = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MODELSCOPE_API_TOKEN"];

/// What the hub said about a model.
#[derive(Clone, Debug, PartialEq)]
pub enum HubCheck {
    /// The revision resolves and the token can read the files; the shape from its
    /// `config.json`, or why there is none.
    Readable {
        commit: String,
        shape: Result<ModelShape, String>,
    },
    /// The repository, revision or access is wrong: no retry fixes it.
    Refused(String),
    /// The hub did not answer (down, slow, out of reach): worth asking again later.
    Unreachable(String),
}

/// The settings the operator's client uses for `hub`: the install's endpoint and the
/// token keys of `secret_settings`.
pub fn operator_hub_settings(
    reference: &HubRef,
    secret_settings: &[(String, String)],
    config: &OperatorConfig,
) -> HubSettings {
    let tokens = secret_settings
        .iter()
        .filter(|(key, _)| TOKEN_KEYS.contains(&key.as_str()));
    let mut settings = HubSettings::from_variables(reference.hub, tokens.map(|(k, v)| (k, v)));
    let install = match reference.hub {
        anneal_crds::hub::Hub::HuggingFace => &config.hf_endpoint,
        anneal_crds::hub::Hub::ModelScope => &config.modelscope_endpoint,
    };
    if let Some(endpoint) = install {
        settings.endpoint = endpoint.trim_end_matches('/').to_owned();
    }
    settings
}

/// Checks the model `field` names (`spec.baseModel.source`), bounded by
/// [`HUB_CHECK_TIMEOUT`].
pub async fn check_hub_model(field: &str, reference: &HubRef, settings: HubSettings) -> HubCheck {
    let endpoint = settings.endpoint.clone();
    let checked =
        tokio::time::timeout(HUB_CHECK_TIMEOUT, resolve_and_read(reference, settings)).await;
    match checked {
        Err(_) => HubCheck::Unreachable(format!(
            "{field}: {endpoint} did not answer within {} s",
            HUB_CHECK_TIMEOUT.as_secs()
        )),
        Ok(Ok((commit, shape))) => HubCheck::Readable { commit, shape },
        Ok(Err(error)) if error.may_pass_on_retry() => {
            HubCheck::Unreachable(format!("{field}: {error}"))
        }
        Ok(Err(error)) => HubCheck::Refused(format!("{field}: {error}")),
    }
}

async fn resolve_and_read(
    reference: &HubRef,
    settings: HubSettings,
) -> Result<(String, Result<ModelShape, String>), HubError> {
    let client = HubClient::new(settings)?;
    let snapshot = client.snapshot(reference).await?;
    let files = snapshot.model_files(reference)?;
    let shape = match files.iter().find(|file| file.path == "config.json") {
        Some(config) => {
            let bytes = client
                .read_small(reference, &snapshot, config, CONFIG_JSON_BYTES_MAX)
                .await?;
            ModelShape::from_config_json(&String::from_utf8_lossy(&bytes))
                .map_err(|error| format!("{reference} config.json gives no shape ({error})"))
        }
        None => {
            client
                .check_readable(reference, &snapshot, files[0])
                .await?;
            Err(format!("{reference} has no config.json"))
        }
    };
    Ok((snapshot.commit, shape))
}

/// Those of the small files `names` a hub model has (the tokenizer's, for a job's
/// estimate), each at most its bytes beside it, within [`HUB_CHECK_TIMEOUT`]; or why not.
pub async fn read_hub_files(
    reference: &HubRef,
    settings: HubSettings,
    names: &[(&str, u64)],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let read = async {
        let client = HubClient::new(settings)?;
        let snapshot = client.snapshot(reference).await?;
        let files = snapshot.model_files(reference)?;
        let mut found = Vec::new();
        for (file, max_bytes) in files.iter().filter_map(|file| {
            let (_, max_bytes) = names.iter().find(|(name, _)| *name == file.path)?;
            Some((file, *max_bytes))
        }) {
            let bytes = client
                .read_small(reference, &snapshot, file, max_bytes)
                .await?;
            found.push((file.path.clone(), bytes));
        }
        Ok::<_, HubError>(found)
    };
    match tokio::time::timeout(HUB_CHECK_TIMEOUT, read).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(error)) => Err(format!("{reference}: {error}")),
        Err(_) => Err(format!(
            "{reference}: the hub did not answer within {} s",
            HUB_CHECK_TIMEOUT.as_secs()
        )),
    }
}
