//! The validating admission webhook for FineTuneJobs, ModelDeployments and
//! ModelEvaluations: the API
//! server sends each create and update here before it stores the object, and the
//! answer refuses a spec with field errors (all of them at once), an image the
//! install does not allow, or a Secret, ConfigMap, PersistentVolumeClaim,
//! FineTuneJob or ModelDeployment its author may not read (docs/security.md).
//!
//! - `POST /validate/finetunejobs`, `POST /validate/modeldeployments`,
//!   `POST /validate/modelevaluations`: an
//!   `admission.k8s.io/v1` AdmissionReview in, the same with its response out.

mod access_review;
pub mod certificate;
mod references;
mod review;
mod serve;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use anneal_crds::modelevaluation::ModelEvaluation;
use anneal_crds::{FineTuneJob, ModelDeployment};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

pub use access_review::{AccessReviewer, KubeAccessReviewer, access_review};
pub use references::{
    Reference, finetunejob_references, modeldeployment_references, modelevaluation_references,
};
pub use review::{Admitted, review};
pub use serve::{WebhookTls, serve_webhook, wait_for_files};

use crate::config::OperatorConfig;

/// Largest AdmissionReview read: the API server sends objects of at most ~1.5 MiB,
/// twice on an update (old and new).
const REVIEW_BYTES_MAX: usize = 4 * 1024 * 1024;

struct Webhook<R> {
    reviewer: R,
    config: OperatorConfig,
}

/// The webhook's routes, ready to serve (over TLS: the API server only calls HTTPS).
pub fn admission_router<R: AccessReviewer>(reviewer: R, config: OperatorConfig) -> Router {
    Router::new()
        .route("/validate/finetunejobs", post(admit::<FineTuneJob, R>))
        .route(
            "/validate/modeldeployments",
            post(admit::<ModelDeployment, R>),
        )
        .route(
            "/validate/modelevaluations",
            post(admit::<ModelEvaluation, R>),
        )
        .layer(axum::extract::DefaultBodyLimit::max(REVIEW_BYTES_MAX))
        .with_state(Arc::new(Webhook { reviewer, config }))
}

async fn admit<K: Admitted, R: AccessReviewer>(
    State(webhook): State<Arc<Webhook<R>>>,
    body: Bytes,
) -> axum::Json<AdmissionReview<DynamicObject>> {
    let response = match request_of::<K>(&body) {
        Ok(request) => review(&request, &webhook.reviewer, &webhook.config).await,
        Err(response) => *response,
    };
    axum::Json(response.into_review())
}

/// The request in `body`, or the refusal to send when it is not one: a review whose
/// object is not a valid `K` is refused with the reason, under its own uid.
fn request_of<K: Admitted>(body: &[u8]) -> Result<AdmissionRequest<K>, Box<AdmissionResponse>> {
    let typed = serde_json::from_slice::<AdmissionReview<K>>(body)
        .map_err(|error| error.to_string())
        .and_then(|review| {
            review.try_into().map_err(
                |error: kube::core::admission::ConvertAdmissionReviewError| error.to_string(),
            )
        });
    typed.map_err(|problem| {
        let generic: Option<AdmissionRequest<DynamicObject>> =
            serde_json::from_slice::<AdmissionReview<DynamicObject>>(body)
                .ok()
                .and_then(|review| review.try_into().ok());
        Box::new(match generic {
            Some(request) => AdmissionResponse::from(&request)
                .deny(format!("the object does not parse: {problem}")),
            None => AdmissionResponse::invalid(problem),
        })
    })
}
