//! `status.estimate`, made in Validating before any GPU is asked for: the job's tokens
//! (its training data through the model's own tokenizer and chat template, as
//! training reads them), steps and FLOPs (`anneal_crds::estimate`), and on GPUs the
//! steps' time at the install's GPU speed and utilization, GPU-hours and cost.
//!
//! Bounded like the rest of Validating: the tokenizer files come from the model's
//! `s3://` folder or hub repository (at most 32 MiB of `tokenizer.json` and 2 MiB of
//! each other file, within 20 s), one model's tokenizer is in memory at a time
//! (220 MiB at most while it is read, 107 held: `cargo bench -p anneal-chat --bench
//! tokenizer_memory`, within the chart's 512 MiB limit), and at most
//! [`COUNTED_BYTES_MAX`] of each dataset is tokenized; a larger dataset's count is
//! scaled by its size, and the basis says so. An estimate that cannot be made (a
//! model on a claim, a dataset the operator does not read) is left out, with the
//! reason in the log: it never holds a job back.

use std::sync::Arc;
use std::time::Duration;

use anneal_chat::dataset_tokens::count_tokens;
use anneal_chat::{ModelFolder, ModelTokenizer};
use anneal_crds::FineTuneJob;
use anneal_crds::dataset::DatasetKind;
use anneal_crds::estimate::{EpochTokens, Throughput, TrainingWork, estimate, rough_duration};
use anneal_crds::finetunejob::{DEFAULT_VALIDATION_SPLIT, JobEstimate};
use anneal_crds::hub::HubRef;
use anneal_crds::memory_plan::{DeviceMemory, ModelShape, plan_for_job};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::config::OperatorConfig;
use crate::error::Result;
use crate::finetunejob::dataset_check::{read_head_within, storage_settings};
use crate::finetunejob::model_shape_check::CONFIG_JSON_BYTES_MAX;
use crate::finetunejob::storage_access::{StorageAccess, operator_storage_access};
use crate::finetunejob::trainer_job::base_model_source;
use crate::shared::hub_check::{operator_hub_settings, read_hub_files};

/// Bytes of a dataset tokenized for the count (about two million tokens: seconds of
/// one core); the rest is scaled from them.
pub const COUNTED_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// A tokenizer file is megabytes (Qwen2.5's `tokenizer.json` is 7 MB, Llama 3's 9 MB);
/// loaded, it takes 3.3 times its size, and 6.8 times while it is read.
const TOKENIZER_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// The other tokenizer files are kilobytes (Llama 3.1's `tokenizer_config.json` is 55 kB).
const SMALL_FILE_BYTES_MAX: u64 = 2 * 1024 * 1024;
const TOKENIZER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// What the tokenizer and its chat format are read from, as in a model folder, and the
/// most read of each.
const TOKENIZER_FILES: [(&str, u64); 5] = [
    ("config.json", CONFIG_JSON_BYTES_MAX),
    ("tokenizer.json", TOKENIZER_BYTES_MAX),
    ("tokenizer_config.json", SMALL_FILE_BYTES_MAX),
    ("chat_template.jinja", SMALL_FILE_BYTES_MAX),
    ("generation_config.json", SMALL_FILE_BYTES_MAX),
];

/// Estimates made at once across every job: a large model's tokenizer takes a hundred
/// megabytes, beside the dataset's 8 MiB, within the operator's memory limit.
static ESTIMATES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The last model's tokenizer, by its source: jobs come in series on one model, and
/// its files (7 MB for Qwen2.5's tokenizer.json) need not be read for each. Another
/// model's replaces it, after it is dropped.
static LAST_TOKENIZER: std::sync::Mutex<Option<(String, Arc<ModelTokenizer>)>> =
    std::sync::Mutex::new(None);

/// A dataset's tokens as counted, and the share of it that was read.
struct Counted {
    tokens: EpochTokens,
    /// Bytes read over the dataset's size: 1 when it was read whole.
    read_share: f64,
}

/// The job's estimate on `shape`, or why there is none.
pub async fn estimate_job(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
    shape: ModelShape,
) -> Result<std::result::Result<JobEstimate, String>> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let settings = match storage_settings(client, &namespace, job, config).await? {
        Ok(settings) => settings,
        Err(why) => return Ok(Err(why)),
    };
    let _turn = ESTIMATES
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let tokenizer = match cached_tokenizer(job, config, &settings).await {
        Ok(tokenizer) => tokenizer,
        Err(why) => return Ok(Err(why)),
    };
    let max_tokens = job.resolved_hyperparameters().max_tokens as usize;
    let kind = DatasetKind::from(job.spec.method);
    let dataset = &job.spec.dataset;
    let train = match &dataset.config_map {
        Some(config_map) => {
            config_map_text(client, &namespace, &config_map.name, &config_map.key).await?
        }
        None => match dataset.train.as_deref() {
            Some(uri) => object_head(uri, &settings, config).await?,
            None => Err("spec.dataset has no training file".to_owned()),
        },
    };
    let train = match train {
        Ok(bytes) => count(bytes, kind, &tokenizer, max_tokens).await,
        Err(why) => return Ok(Err(why)),
    };
    let mut counted = train.read_share;
    let main = match dataset.validation {
        Some(_) => train.tokens,
        None => {
            let split = dataset.validation_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
            let held_out = (train.tokens.samples as f64 * split).round() as u64;
            train
                .tokens
                .scaled_to(train.tokens.samples - held_out.min(train.tokens.samples))
        }
    };
    let mut per_epoch = main;
    for (index, mixed) in dataset.mix.iter().enumerate() {
        let set = match object_head(&mixed.uri, &settings, config).await? {
            Ok(bytes) => count(bytes, kind, &tokenizer, max_tokens).await,
            Err(why) => return Ok(Err(format!("spec.dataset.mix[{index}]: {why}"))),
        };
        counted = counted.min(set.read_share);
        let draws = ((mixed.weight * main.samples as f64).round() as u64).max(1);
        per_epoch = per_epoch.plus(&set.tokens.scaled_to(draws));
    }
    Ok(Ok(job_estimate(job, config, shape, per_epoch, counted)))
}

/// The estimate of an epoch of `per_epoch` tokens, `counted` the smallest share of a
/// dataset that was read.
fn job_estimate(
    job: &FineTuneJob,
    config: &OperatorConfig,
    shape: ModelShape,
    per_epoch: EpochTokens,
    counted: f64,
) -> JobEstimate {
    let work = TrainingWork::of_job(job, shape, per_epoch);
    let gpus = job.spec.resources.gpus;
    // Data-parallel GPUs compute together; layers placed across GPUs take turns.
    let computing = plan_for_job(
        &job.spec,
        shape,
        DeviceMemory::gpus(config.gpu_memory, gpus),
    )
    .map_or(1, |plan| plan.replicas as u32);
    let throughput = Throughput {
        devices: gpus,
        computing,
        peak_flops: config.gpu_tflops * 1e12,
        utilization: config.estimate_utilization,
    };
    let found = estimate(&work, &throughput, gpus > 0, config.price_per_gpu_hour);
    let share = if counted < 1.0 {
        format!(
            "tokens counted on the first {:.0}% of the data and scaled",
            counted * 100.0
        )
    } else {
        "tokens counted on the whole data".to_owned()
    };
    let basis = if gpus > 0 {
        format!(
            "{share}; {gpus} GPU(s) of {} TFLOPS at {:.0}% utilization{}; training steps only (checkpoints, validation and loading not included)",
            config.gpu_tflops,
            config.estimate_utilization * 100.0,
            match (gpus, computing) {
                (0 | 1, _) => "",
                (_, 1) => ", one computing at a time (the layers placed across them)",
                _ => ", data-parallel",
            }
        )
    } else {
        format!("{share}; no duration on the CPU, whose speed the operator does not know")
    };
    JobEstimate {
        samples_per_epoch: per_epoch.samples,
        tokens_per_epoch: per_epoch.positions,
        steps: found.steps,
        flops: found.flops,
        duration: (gpus > 0).then(|| rough_duration(found.seconds)),
        duration_seconds: (gpus > 0).then(|| found.seconds.round() as u64),
        gpu_hours: (gpus > 0).then_some((found.gpu_hours * 100.0).round() / 100.0),
        cost: found.cost.map(|cost| (cost * 100.0).round() / 100.0),
        basis,
    }
}

/// Counts `bytes`, the head of a dataset of `size` bytes (a cut-off last line is
/// skipped), off the async threads.
async fn count(
    (bytes, size): (Vec<u8>, u64),
    kind: DatasetKind,
    tokenizer: &Arc<ModelTokenizer>,
    max_tokens: usize,
) -> Counted {
    let read_share = (bytes.len() as f64 / size.max(1) as f64).min(1.0);
    let tokenizer = tokenizer.clone();
    let counting =
        tokio::task::spawn_blocking(move || count_tokens(&bytes[..], kind, &tokenizer, max_tokens));
    // A panic in the tokenizer counts nothing rather than stopping the reconcile.
    let tokens = counting.await.unwrap_or_default();
    Counted {
        tokens: tokens.scaled_to((tokens.samples as f64 / read_share).round() as u64),
        read_share,
    }
}

/// The model's tokenizer: the last one when the job names the same source.
async fn cached_tokenizer(
    job: &FineTuneJob,
    config: &OperatorConfig,
    settings: &[(String, String)],
) -> std::result::Result<Arc<ModelTokenizer>, String> {
    let source = base_model_source(job).map_err(|e| e.to_string())?;
    // A hub model by its repository and revision, however the URI spells them.
    let source = match HubRef::parse(source.trim_end_matches('/')) {
        Some(Ok(reference)) => format!(
            "{}://{}@{}",
            reference.hub.scheme(),
            reference.repo,
            reference.revision_or_default()
        ),
        _ => source,
    };
    {
        let mut last = LAST_TOKENIZER.lock().expect("tokenizer cache lock");
        match last.as_ref() {
            Some((cached, tokenizer)) if *cached == source => return Ok(tokenizer.clone()),
            // Dropped before the next is read, so that two are never in memory at once
            // (estimates take turns, so none still holds it).
            _ => *last = None,
        }
    }
    let tokenizer = Arc::new(model_tokenizer(job, config, settings).await?);
    *LAST_TOKENIZER.lock().expect("tokenizer cache lock") = Some((source, tokenizer.clone()));
    Ok(tokenizer)
}

/// The model's tokenizer, from the files of its `s3://` folder or hub repository.
async fn model_tokenizer(
    job: &FineTuneJob,
    config: &OperatorConfig,
    settings: &[(String, String)],
) -> std::result::Result<ModelTokenizer, String> {
    let source = base_model_source(job).map_err(|e| e.to_string())?;
    let source = source.trim_end_matches('/');
    let files = if let Some(Ok(reference)) = HubRef::parse(source) {
        let hub = operator_hub_settings(&reference, settings, config);
        read_hub_files(&reference, hub, &TOKENIZER_FILES).await?
    } else if source.starts_with("s3://") {
        let StorageAccess::Allowed(allowed) = operator_storage_access(settings.to_vec(), config)
        else {
            return Err(format!("the operator may not read {source}"));
        };
        let mut files = Vec::new();
        for (name, max_bytes) in TOKENIZER_FILES {
            let uri = format!("{source}/{name}");
            let read = read_head_within(&uri, allowed.clone(), max_bytes, TOKENIZER_READ_TIMEOUT);
            match read.await {
                Ok(Some(head)) => files.push((name.to_owned(), whole_file(&uri, head, max_bytes)?)),
                Ok(None) => {}
                Err(error) => return Err(format!("{uri}: {error}")),
            }
        }
        files
    } else {
        let scheme = source.split("://").next().unwrap_or_default();
        return Err(format!("the operator does not read {scheme}:// models"));
    };
    // Seconds of one core for a large vocabulary: off the reconciling threads.
    let read = tokio::task::spawn_blocking(move || tokenizer_of(&files));
    read.await
        .unwrap_or_else(|panic| Err(format!("reading the tokenizer failed: {panic}")))
        .map_err(|why| format!("{source}: {why}"))
}

/// The bytes of a file read at most `max_bytes` of, or why a larger one is not read.
fn whole_file(
    uri: &str,
    (bytes, size): (Vec<u8>, u64),
    max_bytes: u64,
) -> std::result::Result<Vec<u8>, String> {
    if size > bytes.len() as u64 {
        return Err(format!(
            "{uri} is {size} bytes, more than the {max_bytes} the operator reads of it"
        ));
    }
    Ok(bytes)
}

/// A tokenizer from a model folder's files.
fn tokenizer_of(files: &[(String, Vec<u8>)]) -> std::result::Result<ModelTokenizer, String> {
    let architecture = (files.iter())
        .find(|(name, _)| name == "config.json")
        .and_then(|(_, bytes)| serde_json::from_slice::<serde_json::Value>(bytes).ok())
        .and_then(|config| config["architectures"][0].as_str().map(str::to_owned))
        .unwrap_or_default();
    ModelTokenizer::from_folder(ModelFolder::Files(files), &architecture).map_err(|e| e.to_string())
}

/// The first [`COUNTED_BYTES_MAX`] of a dataset object and its size.
async fn object_head(
    uri: &str,
    settings: &[(String, String)],
    config: &OperatorConfig,
) -> Result<std::result::Result<(Vec<u8>, u64), String>> {
    if !uri.starts_with("s3://") {
        return Ok(Err(format!("{uri} is read by the trainer only")));
    }
    let StorageAccess::Allowed(allowed) = operator_storage_access(settings.to_vec(), config) else {
        return Ok(Err(format!("the operator may not read {uri}")));
    };
    let read = read_head_within(uri, allowed, COUNTED_BYTES_MAX, Duration::from_secs(60));
    Ok(match read.await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(format!("there is no {uri}")),
        Err(error) => Err(format!("{uri}: {error}")),
    })
}

/// A ConfigMap dataset's text (its whole size: ConfigMaps are at most 1 MiB).
async fn config_map_text(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<std::result::Result<(Vec<u8>, u64), String>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let text = (api.get_opt(name).await?)
        .and_then(|found| found.data?.remove(key))
        .map(String::into_bytes);
    Ok(match text {
        Some(bytes) => {
            let size = bytes.len() as u64;
            Ok((bytes, size))
        }
        None => Err(format!("ConfigMap {name} has no key {key}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_tokenizer() -> Arc<ModelTokenizer> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny");
        Arc::new(ModelTokenizer::from_model_dir(&dir, "Qwen2ForCausalLM").unwrap())
    }

    #[test]
    fn a_tokenizer_file_larger_than_the_operator_reads_is_named_not_parsed() {
        let uri = "s3://models/big/tokenizer.json";
        let head = vec![b'{'; 16];
        assert_eq!(whole_file(uri, (head.clone(), 16), 16).unwrap(), head);
        assert_eq!(
            whole_file(uri, (head, 40_000_000), 16).unwrap_err(),
            "s3://models/big/tokenizer.json is 40000000 bytes, more than the 16 the operator reads of it"
        );
    }

    #[test]
    fn a_tokenizer_is_read_from_the_files_in_memory() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/anneal-tiny");
        let files: Vec<(String, Vec<u8>)> =
            ["config.json", "tokenizer.json", "tokenizer_config.json"]
                .iter()
                .map(|name| (name.to_string(), std::fs::read(dir.join(name)).unwrap()))
                .collect();
        let tokenizer = tokenizer_of(&files).unwrap();
        let text = "Where is my order?";
        assert_eq!(
            tokenizer.encode(text, false).unwrap(),
            tiny_tokenizer().encode(text, false).unwrap()
        );
        // A broken file is named by its name in the folder, not a temporary path.
        let broken = [("tokenizer.json".to_owned(), b"{".to_vec())];
        let why = tokenizer_of(&broken).unwrap_err();
        assert!(
            why.starts_with("tokenizer.json is not a tokenizer"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_dataset_read_in_part_is_scaled_by_its_size() {
        let tokenizer = tiny_tokenizer();
        let line = r#"{"messages": [{"role": "user", "content": "Is it windy?"}, {"role": "assistant", "content": "Good question! A little."}]}"#;
        let all: String = (0..10).map(|_| format!("{line}\n")).collect();
        let whole = count(
            (all.clone().into_bytes(), all.len() as u64),
            DatasetKind::Sft,
            &tokenizer,
            256,
        )
        .await;
        assert_eq!((whole.tokens.samples, whole.read_share), (10, 1.0));
        // Five lines and half the sixth: the cut line is skipped, the five are
        // scaled to the size (5 / 0.55 of it read).
        let head = all.as_bytes()[..all.len() * 55 / 100].to_vec();
        let part = count((head, all.len() as u64), DatasetKind::Sft, &tokenizer, 256).await;
        assert!((part.read_share - 0.55).abs() < 0.01, "{}", part.read_share);
        assert_eq!(part.tokens.samples, 9);
        assert_eq!(part.tokens.positions, whole.tokens.positions / 10 * 9);
    }
}
