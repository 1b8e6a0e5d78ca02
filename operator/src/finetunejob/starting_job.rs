//! A FineTuneJob that starts from another job's checkpoint
//! (`spec.baseModel.fineTuneJob`): it waits, Pending, until that job has ended; then
//! the checkpoint it names is resolved from that job's status, and the base model it
//! trains on through the chain of jobs (a LoRA job's base is the base of the job it
//! starts from; a fully trained checkpoint is itself the base). Both are recorded in
//! `status.startedFrom` once, so a job already started never depends on the other
//! job again (it may be deleted).

use anneal_crds::FineTuneJob;
use anneal_crds::best_checkpoint::best_checkpoint_name;
use anneal_crds::common::BaseModelSpec;
use anneal_crds::finetunejob::{FineTuneJobStatus, JobPhase, StartedFrom, TrainingType};
use kube::{Api, Client, ResourceExt};

/// How many jobs a chain may go back (SFT, DPO, another round...): a guard against a
/// cycle of jobs naming each other.
const CHAIN_MAX: usize = 8;

/// Where a job that starts from another job stands.
#[derive(Debug, PartialEq)]
pub enum StartResolution {
    /// Waiting for the job it names (missing, or not ended): why, in words.
    Waiting(String),
    /// It cannot start from what it names: why, naming the field.
    Refused(String),
    Resolved(StartedFrom),
}

/// `job` as it trains: with `status.startedFrom`'s base model in `spec.baseModel`
/// once resolved (planning, memory plan and model checks read it there).
pub fn as_trained(job: &FineTuneJob, started_from: &StartedFrom) -> FineTuneJob {
    let mut trained = job.clone();
    if let Some(base) = &started_from.base_model {
        trained.spec.base_model = base.clone();
    }
    trained
        .status
        .get_or_insert_with(FineTuneJobStatus::default)
        .started_from = Some(started_from.clone());
    trained
}

/// Resolves what `job` starts from, following the chain of jobs through the API.
pub async fn resolve_start(client: &Client, job: &FineTuneJob) -> kube::Result<StartResolution> {
    let Some(named) = &job.spec.base_model.fine_tune_job else {
        return Ok(StartResolution::Refused(
            "spec.baseModel.fineTuneJob: not set".to_owned(),
        ));
    };
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<FineTuneJob> = Api::namespaced(client.clone(), &namespace);
    let Some(parent) = api.get_opt(&named.name).await? else {
        return Ok(StartResolution::Waiting(format!(
            "waiting for FineTuneJob {}, which does not exist",
            named.name
        )));
    };
    let status = parent.status.clone().unwrap_or_default();
    if !matches!(status.phase, Some(JobPhase::Succeeded | JobPhase::Failed)) {
        let phase = status.phase.unwrap_or(JobPhase::Pending);
        return Ok(StartResolution::Waiting(format!(
            "waiting for FineTuneJob {} to end ({phase:?})",
            named.name
        )));
    }
    let (checkpoint, uri) = match checkpoint_of(&named.name, &status, &named.checkpoint) {
        Ok(found) => found,
        Err(why) => return Ok(StartResolution::Refused(why)),
    };
    let base = match parent.spec.training {
        // Its weights are a whole model: the base itself.
        TrainingType::Full => BaseModelSpec {
            name: job.spec.base_model.name.clone(),
            source: Some(uri.clone()),
            fine_tune_job: None,
        },
        TrainingType::Lora => match base_of_chain(&api, &parent).await? {
            Ok(base) => base,
            Err(why) => return Ok(StartResolution::Refused(why)),
        },
    };
    if base.name != job.spec.base_model.name {
        return Ok(StartResolution::Refused(format!(
            "spec.baseModel.name: {:?}, but FineTuneJob {} trained {:?}: name the base model it trained",
            job.spec.base_model.name, named.name, base.name
        )));
    }
    Ok(StartResolution::Resolved(StartedFrom {
        fine_tune_job: named.name.clone(),
        checkpoint,
        uri,
        training: parent.spec.training,
        base_model: Some(base),
    }))
}

/// The base model `job` trained on: its own, or the one its `status.startedFrom`
/// recorded, or (not yet recorded) the one of the jobs before it.
async fn base_of_chain(
    api: &Api<FineTuneJob>,
    job: &FineTuneJob,
) -> kube::Result<Result<BaseModelSpec, String>> {
    let mut current = job.clone();
    for _ in 0..CHAIN_MAX {
        let recorded = (current.status.as_ref())
            .and_then(|s| s.started_from.as_ref())
            .and_then(|from| from.base_model.clone());
        if let Some(base) = recorded {
            return Ok(Ok(base));
        }
        let Some(named) = current.spec.base_model.fine_tune_job.clone() else {
            return Ok(Ok(current.spec.base_model.clone()));
        };
        match api.get_opt(&named.name).await? {
            Some(before) => current = before,
            None => {
                return Ok(Err(format!(
                    "spec.baseModel.fineTuneJob: FineTuneJob {} started from FineTuneJob {}, which is gone, and never recorded its base model",
                    current.name_any(),
                    named.name
                )));
            }
        }
    }
    Ok(Err(format!(
        "spec.baseModel.fineTuneJob: more than {CHAIN_MAX} jobs each start from the next (a cycle?)"
    )))
}

/// The checkpoint (`final` or `ckpt-N`) and folder that `wanted` names in the status
/// of the ended job `name`, or why there is none.
fn checkpoint_of(
    name: &str,
    status: &FineTuneJobStatus,
    wanted: &str,
) -> Result<(String, String), String> {
    let field = "spec.baseModel.fineTuneJob.checkpoint";
    let named = |checkpoint: &str| {
        (status.checkpoints.iter())
            .find(|c| c.name == checkpoint)
            .map(|c| (c.name.clone(), c.uri.clone()))
    };
    let found = match wanted {
        "final" => (status.result.as_ref()).map(|r| ("final".to_owned(), r.uri.clone())),
        "best" => best_checkpoint_name(&status.checkpoints).and_then(|best| named(&best)),
        checkpoint => named(checkpoint),
    };
    found.ok_or_else(|| {
        let saved: Vec<&str> = status.checkpoints.iter().map(|c| c.name.as_str()).collect();
        format!(
            "{field}: {wanted}: FineTuneJob {name} ended {:?} without it (its checkpoints: {})",
            status.phase.unwrap_or(JobPhase::Pending),
            if saved.is_empty() {
                "none".to_owned()
            } else {
                saved.join(", ")
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> FineTuneJobStatus {
        serde_json::from_value(serde_json::json!({
            "phase": "Succeeded",
            "result": {"modelId": "ft:t:sft:ckpt-4", "uri": "s3://b/runs/ns/sft/uid/final"},
            "checkpoints": [
                {"name": "ckpt-2", "step": 2, "epoch": 0.5, "uri": "s3://b/runs/ns/sft/uid/checkpoints/ckpt-2", "validLoss": 1.0},
                {"name": "ckpt-4", "step": 4, "epoch": 1.0, "uri": "s3://b/runs/ns/sft/uid/checkpoints/ckpt-4", "validLoss": 1.5},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn final_best_and_named_checkpoints_resolve_to_their_folders() {
        assert_eq!(
            checkpoint_of("sft", &status(), "final").unwrap(),
            (
                "final".to_owned(),
                "s3://b/runs/ns/sft/uid/final".to_owned()
            )
        );
        assert_eq!(
            checkpoint_of("sft", &status(), "best").unwrap().0,
            "ckpt-2",
            "the lowest validation loss"
        );
        assert_eq!(
            checkpoint_of("sft", &status(), "ckpt-4").unwrap().1,
            "s3://b/runs/ns/sft/uid/checkpoints/ckpt-4"
        );
        let missing = checkpoint_of("sft", &status(), "ckpt-9").unwrap_err();
        assert_eq!(
            missing,
            "spec.baseModel.fineTuneJob.checkpoint: ckpt-9: FineTuneJob sft ended Succeeded without it (its checkpoints: ckpt-2, ckpt-4)"
        );
        let failed = FineTuneJobStatus {
            phase: Some(JobPhase::Failed),
            ..FineTuneJobStatus::default()
        };
        assert!(
            checkpoint_of("sft", &failed, "final")
                .unwrap_err()
                .contains("ended Failed without it (its checkpoints: none)")
        );
    }
}
