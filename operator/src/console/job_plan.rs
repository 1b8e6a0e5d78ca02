//! The memory plan a GPU job's page shows: the plan Validating judged the job by (its
//! GPUs of the operator's `--gpu-memory` each), from the model's shape (its
//! `config.json`, else the built-in table by name). Read within a few seconds, or
//! left out: the page never waits on a slow hub.

use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_crds::memory_plan::{DeviceMemory, plan_for_job};

use super::ConsoleState;
use crate::finetunejob::memory_verdict::ShapeFound;
use crate::finetunejob::model_shape_check::find_model_shape;
use crate::finetunejob::starting_job::as_trained;

/// The longest the page waits for the model's shape.
const SHAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// The plan's table with a line saying what it is of; `None` for a CPU job or a
/// model whose shape could not be read in time.
pub async fn memory_plan_text(state: &ConsoleState, job: &FineTuneJob) -> Option<String> {
    // A job that starts from another job's checkpoint: on the base model it resolved to.
    let trained = (job.status.as_ref())
        .and_then(|s| s.started_from.as_ref())
        .map(|from| as_trained(job, from));
    let job = trained.as_ref().unwrap_or(job);
    if job.spec.base_model.fine_tune_job.is_some() {
        return None;
    }
    let gpus = job.spec.resources.gpus;
    if gpus == 0 {
        return None;
    }
    let found = tokio::time::timeout(
        SHAPE_TIMEOUT,
        find_model_shape(&state.client, job, &state.config),
    )
    .await
    .ok()?
    .ok()?;
    let (shape, from) = match found {
        ShapeFound::ConfigJson(shape) => (shape, "its config.json"),
        ShapeFound::BuiltIn(shape) => (shape, "the built-in shape of its name"),
        ShapeFound::Unknown(_) => return None,
    };
    let memory = state.config.gpu_memory;
    let on = match gpus {
        1 => format!("one GPU of {memory}"),
        _ => format!("{gpus} GPUs of {memory} each"),
    };
    let model = &job.spec.base_model.name;
    Some(
        match plan_for_job(&job.spec, shape, DeviceMemory::gpus(memory, gpus)) {
            Ok(plan) => format!("{model} (shape from {from}) on {on}:\n\n{plan}"),
            Err(does_not_fit) => format!("{model} (shape from {from}) on {on}: {does_not_fit}"),
        },
    )
}
