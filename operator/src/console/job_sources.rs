//! Where the console reads a job's page from besides the job itself: the run's `events.jsonl` and sample pictures from
//! storage (with the job's credentials, under the same rules as every other read the
//! operator makes of a tenant's storage), and its Kubernetes Events. Every storage
//! read has a time limit: a slow store makes a page say so, never hang.

use std::time::Duration;

use anneal_console::jobs::EventLine;
use anneal_crds::FineTuneJob;
use anneal_crds::storage::AsyncStorage;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::config::OperatorConfig;
use crate::finetunejob::dataset_check::job_storage_access;
use crate::finetunejob::storage_access::StorageAccess;
use crate::finetunejob::trainer_job::run_uri;

/// The longest a page waits for a storage read.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of `events.jsonl` a page reads: about 100,000 steps of a run's metrics.
pub const EVENTS_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// The most Events a page shows, the newest.
const EVENTS_SHOWN: usize = 50;

/// The job's run folder (its URI, as the trainer writes it) and its storage, or why
/// the operator does not read it.
async fn run_storage(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<(String, AsyncStorage), String> {
    let run = run_uri(job, config).map_err(|e| e.to_string())?;
    let settings = match job_storage_access(client, job, config).await {
        Ok(StorageAccess::Allowed(settings)) => settings,
        Ok(StorageAccess::Refused(why)) => return Err(why),
        Err(error) => return Err(error.to_string()),
    };
    let storage = AsyncStorage::open_with(&run, settings).map_err(|e| e.to_string())?;
    Ok((run, storage))
}

/// The run's `events.jsonl` (whole lines of its first [`EVENTS_BYTES_MAX`]), or why
/// it is not there to read.
pub async fn run_events(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
) -> Result<String, String> {
    let (run, storage) = run_storage(client, job, config).await?;
    let read = tokio::time::timeout(
        STORAGE_TIMEOUT,
        storage.get_head("events.jsonl", EVENTS_BYTES_MAX),
    );
    match read.await {
        Err(_) => Err(format!(
            "{run}/events.jsonl did not answer within {} s",
            STORAGE_TIMEOUT.as_secs()
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Ok(Ok(None)) => Err(format!(
            "{run}/events.jsonl is not there yet (the trainer copies it at each checkpoint)"
        )),
        Ok(Ok(Some((bytes, size)))) => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(if size > bytes.len() as u64 {
                // A cut file: its last line may be half an event.
                text.rsplit_once('\n')
                    .map_or(String::new(), |(whole, _)| whole.to_owned())
            } else {
                text
            })
        }
    }
}

/// A sample picture the job's status names: `checkpoints/{checkpoint}/{file}` of its
/// run folder, when that checkpoint's samples hold exactly that URI. Nothing else of
/// the storage is ever served.
pub async fn sample_picture(
    client: &Client,
    job: &FineTuneJob,
    config: &OperatorConfig,
    checkpoint: &str,
    file: &str,
) -> Option<Vec<u8>> {
    let (run, storage) = run_storage(client, job, config).await.ok()?;
    let relative = format!("checkpoints/{checkpoint}/{file}");
    let wanted = format!("{run}/{relative}");
    let named = (job.status.as_ref()?.checkpoints.iter())
        .any(|c| c.name == checkpoint && c.samples.contains(&wanted));
    if !named || !anneal_console::pages::sample_picture(file) {
        return None;
    }
    let read = tokio::time::timeout(STORAGE_TIMEOUT, storage.get(&relative));
    read.await.ok()?.ok()?
}

/// The Kubernetes Events about this very job (by uid), oldest first, the newest
/// [`EVENTS_SHOWN`].
pub async fn job_events(client: &Client, job: &FineTuneJob) -> kube::Result<Vec<EventLine>> {
    let api: Api<Event> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let params = ListParams::default().fields(&format!("regarding.name={}", job.name_any()));
    let uid = job.uid();
    let mut events: Vec<Event> = (api.list(&params).await?.items.into_iter())
        .filter(|e| {
            let regarding = e.regarding.as_ref();
            regarding.and_then(|r| r.kind.as_deref()) == Some("FineTuneJob")
                && regarding.and_then(|r| r.uid.clone()) == uid
        })
        .collect();
    events.sort_by_key(event_time);
    let excess = events.len().saturating_sub(EVENTS_SHOWN);
    Ok(events
        .into_iter()
        .skip(excess)
        .map(|e| EventLine {
            time: event_time(&e).map_or("-".to_owned(), |t| t.to_string()),
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
        })
        .collect())
}

/// When the event last happened: its series' last time, else its own.
fn event_time(event: &Event) -> Option<anneal_crds::jiff::Timestamp> {
    (event.series.as_ref().map(|s| s.last_observed_time.0))
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}
