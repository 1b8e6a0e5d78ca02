//! Judging one admission request for a FineTuneJob, ModelDeployment or
//! ModelEvaluation: every field
//! error of the spec at once (the same validation the controllers and `trainer train`
//! run, so `kubectl apply` shows them all instead of a job failing later), the image
//! policy, and whether the requesting user may read each object the spec names.
//! Deletions, and updates that leave the spec as it was (finalizers, labels, the
//! operator's own writes), pass without checks, so an object written before a rule
//! changed can always be deleted.

use anneal_crds::modelevaluation::ModelEvaluation;
use anneal_crds::validation::{
    FieldErrors, validate_finetunejob, validate_modeldeployment, validate_modelevaluation,
};
use anneal_crds::{FineTuneJob, ModelDeployment};
use kube::Resource;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde::de::DeserializeOwned;

use super::access_review::AccessReviewer;
use super::references::{
    Reference, finetunejob_references, modeldeployment_references, modelevaluation_references,
};
use crate::config::OperatorConfig;
use crate::shared::image_policy::check_image;

/// A kind the webhook judges.
pub trait Admitted: Resource + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Every field error and policy refusal of the spec, as `field: problem`.
    fn spec_problems(&self, config: &OperatorConfig) -> Vec<String>;
    /// The objects the spec names.
    fn references(&self) -> Vec<Reference>;
    /// Whether `old` has the same spec.
    fn same_spec(&self, old: &Self) -> bool;
}

impl Admitted for FineTuneJob {
    fn spec_problems(&self, config: &OperatorConfig) -> Vec<String> {
        problems_of(
            validate_finetunejob(self),
            self.spec.resources.image.as_deref(),
            config,
        )
    }

    fn references(&self) -> Vec<Reference> {
        finetunejob_references(self)
    }

    fn same_spec(&self, old: &Self) -> bool {
        self.spec == old.spec
    }
}

impl Admitted for ModelDeployment {
    fn spec_problems(&self, config: &OperatorConfig) -> Vec<String> {
        problems_of(
            validate_modeldeployment(self),
            self.spec.resources.image.as_deref(),
            config,
        )
    }

    fn references(&self) -> Vec<Reference> {
        modeldeployment_references(self)
    }

    fn same_spec(&self, old: &Self) -> bool {
        self.spec == old.spec
    }
}

impl Admitted for ModelEvaluation {
    fn spec_problems(&self, config: &OperatorConfig) -> Vec<String> {
        problems_of(
            validate_modelevaluation(self),
            self.spec.resources.image.as_deref(),
            config,
        )
    }

    fn references(&self) -> Vec<Reference> {
        modelevaluation_references(self)
    }

    fn same_spec(&self, old: &Self) -> bool {
        self.spec == old.spec
    }
}

/// The field errors of a validation and the image policy's refusal, as `field: problem`.
fn problems_of(
    validated: Result<(), FieldErrors>,
    image: Option<&str>,
    config: &OperatorConfig,
) -> Vec<String> {
    let mut problems: Vec<String> = validated
        .err()
        .map(|errors| errors.0.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    problems.extend(
        check_image(image, config)
            .err()
            .map(|refused| refused.to_string()),
    );
    problems
}

/// The answer to `request`. Fails closed: an access check that cannot be made
/// refuses the object, naming what could not be checked.
pub async fn review<K: Admitted, R: AccessReviewer>(
    request: &AdmissionRequest<K>,
    reviewer: &R,
    config: &OperatorConfig,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    let Some(object) = request.object.as_ref() else {
        return response;
    };
    let old = request.old_object.as_ref();
    match request.operation {
        Operation::Create | Operation::Update => {}
        Operation::Delete | Operation::Connect => return response,
    }
    if old.is_some_and(|old| object.same_spec(old)) {
        return response;
    }
    let mut problems = object.spec_problems(config);
    // On an update, only what the new spec names anew is checked: the rest was
    // checked when it was named.
    let before = old.map(Admitted::references).unwrap_or_default();
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.meta().namespace.clone())
        .unwrap_or_default();
    let user = &request.user_info;
    let who = user.username.as_deref().unwrap_or("this user");
    for reference in object.references() {
        if before.contains(&reference) {
            continue;
        }
        let noun = if reference.group.is_empty() {
            reference.resource.to_owned()
        } else {
            format!("{}.{}", reference.resource, reference.group)
        };
        match reviewer.may_get(user, &namespace, &reference).await {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "{}: {who} may not get {noun} {} in namespace {namespace}, so this spec may not name it",
                reference.field, reference.name
            )),
            Err(error) => problems.push(format!(
                "{}: could not check whether {who} may get {noun} {} ({error}); refused until it can be checked",
                reference.field, reference.name
            )),
        }
    }
    if problems.is_empty() {
        response
    } else {
        response.deny(problems.join("; "))
    }
}
