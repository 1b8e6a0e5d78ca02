//! Whether the user who sends a spec may read an object it names, asked of the API
//! server as a SubjectAccessReview for that user (their name, groups, uid and extra
//! attributes, as the admission request carries them).

use std::future::Future;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview};
use kube::api::PostParams;
use kube::{Api, Client};

use super::references::Reference;
use crate::shared::subject_access_review::subject_access_review;

/// Answers "may `user` get `reference` in `namespace`?". Implemented over kube, and
/// by a fake in tests.
pub trait AccessReviewer: Clone + Send + Sync + 'static {
    fn may_get(
        &self,
        user: &UserInfo,
        namespace: &str,
        reference: &Reference,
    ) -> impl Future<Output = Result<bool, kube::Error>> + Send;
}

#[derive(Clone)]
pub struct KubeAccessReviewer {
    client: Client,
}

impl KubeAccessReviewer {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

/// The SubjectAccessReview asking whether `user` may get `reference` in `namespace`.
pub fn access_review(
    user: &UserInfo,
    namespace: &str,
    reference: &Reference,
) -> SubjectAccessReview {
    let attributes = ResourceAttributes {
        namespace: Some(namespace.to_owned()),
        verb: Some("get".to_owned()),
        group: Some(reference.group.to_owned()),
        resource: Some(reference.resource.to_owned()),
        name: Some(reference.name.clone()),
        ..ResourceAttributes::default()
    };
    subject_access_review(user, attributes)
}

impl AccessReviewer for KubeAccessReviewer {
    async fn may_get(
        &self,
        user: &UserInfo,
        namespace: &str,
        reference: &Reference,
    ) -> Result<bool, kube::Error> {
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answered = reviews
            .create(
                &PostParams::default(),
                &access_review(user, namespace, reference),
            )
            .await?;
        Ok(answered.status.is_some_and(|status| status.allowed))
    }
}
