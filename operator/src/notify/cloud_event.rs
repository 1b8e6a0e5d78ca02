//! What a FineTuneJob's change is worth telling (`spec.notify`), and how it is told:
//! a CloudEvent (structured JSON mode, spec 1.0) with the job's key figures, signed
//! with HMAC-SHA256 when the receiver names a signing Secret. Pure: the watcher
//! feeds it jobs, the delivery posts what it returns.

use std::collections::BTreeSet;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::{CheckpointStatus, JobPhase, NotifyEvent};
use kube::ResourceExt;
use serde_json::{Value, json};

/// What the notifier last saw of a job: enough to tell what changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub phase: Option<JobPhase>,
    pub checkpoints: BTreeSet<String>,
}

impl Seen {
    pub fn of(job: &FineTuneJob) -> Self {
        let status = job.status.clone().unwrap_or_default();
        Self {
            phase: status.phase,
            checkpoints: status.checkpoints.into_iter().map(|c| c.name).collect(),
        }
    }
}

/// An event worth telling, and the checkpoint it is about (for `checkpoint`).
#[derive(Clone, Debug, PartialEq)]
pub struct Happened {
    pub event: NotifyEvent,
    pub checkpoint: Option<CheckpointStatus>,
}

/// What happened between `before` and `job` as it is now: the trainer starting to
/// run, each new checkpoint, and the end.
pub fn what_happened(before: &Seen, job: &FineTuneJob) -> Vec<Happened> {
    let status = job.status.clone().unwrap_or_default();
    let mut happened = Vec::new();
    let entered = |phase: JobPhase| status.phase == Some(phase) && before.phase != Some(phase);
    if entered(JobPhase::Running) {
        happened.push(Happened {
            event: NotifyEvent::Started,
            checkpoint: None,
        });
    }
    for checkpoint in status.checkpoints.iter() {
        if !before.checkpoints.contains(&checkpoint.name) {
            happened.push(Happened {
                event: NotifyEvent::Checkpoint,
                checkpoint: Some(checkpoint.clone()),
            });
        }
    }
    for (phase, event) in [
        (JobPhase::Succeeded, NotifyEvent::Succeeded),
        (JobPhase::Failed, NotifyEvent::Failed),
    ] {
        if entered(phase) {
            happened.push(Happened {
                event,
                checkpoint: None,
            });
        }
    }
    happened
}

/// The CloudEvent telling `happened` of `job` at `time` (RFC 3339), as JSON.
pub fn cloud_event(job: &FineTuneJob, happened: &Happened, time: &str) -> Value {
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let status = job.status.clone().unwrap_or_default();
    let metrics = status.metrics.clone().unwrap_or_default();
    let progress = status.progress.clone();
    let checkpoint = happened.checkpoint.as_ref();
    let event = happened.event.name();
    // The same event told twice (an operator restart) keeps its id, so a receiver
    // can drop the repeat.
    let id = format!(
        "{}/{event}{}",
        job.uid().unwrap_or_default(),
        checkpoint.map_or(String::new(), |c| format!("/{}", c.name))
    );
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/apis/anneal.dev/v1alpha1/namespaces/{namespace}/finetunejobs/{name}"),
        "type": format!("dev.anneal.finetunejob.{event}"),
        "subject": name,
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "namespace": namespace,
            "name": name,
            "uid": job.uid(),
            "event": event,
            "phase": status.phase,
            "message": status.message,
            "baseModel": job.spec.base_model.name,
            "method": job.spec.method,
            "step": progress.as_ref().map(|p| p.step),
            "totalSteps": progress.as_ref().map(|p| p.total_steps),
            "trainLoss": metrics.train_loss,
            "validLoss": metrics.valid_loss,
            "checkpoint": checkpoint,
            "bestCheckpoint": anneal_crds::best_checkpoint::best_checkpoint_name(&status.checkpoints),
            "modelId": status.result.as_ref().map(|r| r.model_id.clone()),
            "resultUri": status.result.as_ref().map(|r| r.uri.clone()),
        },
    })
}

/// The CloudEvent of a job deleted before it ended.
pub fn cancelled_event(job: &FineTuneJob, time: &str) -> Value {
    cloud_event(
        job,
        &Happened {
            event: NotifyEvent::Cancelled,
            checkpoint: None,
        },
        time,
    )
}

/// `X-Anneal-Signature`'s value for `body` signed with `key`: `sha256=` and the
/// lower-case hex HMAC-SHA256.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: Value) -> FineTuneJob {
        serde_json::from_value(json!({
            "apiVersion": "anneal.dev/v1alpha1",
            "kind": "FineTuneJob",
            "metadata": {"name": "story", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "baseModel": {"name": "anneal-tiny", "source": "s3://m/tiny"},
                "dataset": {"train": "s3://d/train.jsonl"},
                "notify": [{"url": "https://hooks.example/anneal"}],
            },
            "status": status,
        }))
        .unwrap()
    }

    fn checkpoint(name: &str) -> Value {
        json!({"name": name, "step": 2, "epoch": 0.5, "uri": format!("s3://r/{name}")})
    }

    #[test]
    fn starting_each_checkpoint_and_the_end_are_told_once() {
        let running = job(json!({"phase": "Running", "checkpoints": [checkpoint("ckpt-2")]}));
        let events = |before: &Seen, job: &FineTuneJob| -> Vec<NotifyEvent> {
            what_happened(before, job)
                .into_iter()
                .map(|h| h.event)
                .collect()
        };
        assert_eq!(
            events(&Seen::default(), &running),
            [NotifyEvent::Started, NotifyEvent::Checkpoint]
        );
        assert!(
            events(&Seen::of(&running), &running).is_empty(),
            "nothing new"
        );
        let done = job(json!({"phase": "Succeeded",
            "checkpoints": [checkpoint("ckpt-2"), checkpoint("ckpt-4")],
            "result": {"modelId": "ft:anneal-tiny:story:ckpt-4", "uri": "s3://r/final"}}));
        let happened = what_happened(&Seen::of(&running), &done);
        assert_eq!(
            happened.iter().map(|h| h.event).collect::<Vec<_>>(),
            [NotifyEvent::Checkpoint, NotifyEvent::Succeeded]
        );
        assert_eq!(happened[0].checkpoint.as_ref().unwrap().name, "ckpt-4");

        let told = cloud_event(&done, &happened[1], "2026-12-06T02:00:00Z");
        assert_eq!(told["type"], "dev.anneal.finetunejob.succeeded");
        assert_eq!(told["id"], "u-1/succeeded");
        assert_eq!(
            told["source"],
            "/apis/anneal.dev/v1alpha1/namespaces/team-a/finetunejobs/story"
        );
        assert_eq!(told["data"]["modelId"], "ft:anneal-tiny:story:ckpt-4");
        let checkpoint_told = cloud_event(&done, &happened[0], "t");
        assert_eq!(checkpoint_told["id"], "u-1/checkpoint/ckpt-4");
        assert_eq!(
            checkpoint_told["data"]["checkpoint"]["uri"],
            "s3://r/ckpt-4"
        );
    }

    #[test]
    fn the_signature_is_githubs_hmac_sha256_form() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
