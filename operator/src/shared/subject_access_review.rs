//! Asking the API server whether a user may do something: the SubjectAccessReview for
//! a user (their name, groups, uid and extra attributes) and what they would do. The
//! admission webhook asks it of a spec's author, the console of its viewer.

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};

/// The review of `user` doing what `attributes` say.
pub fn subject_access_review(
    user: &UserInfo,
    attributes: ResourceAttributes,
) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(attributes),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}
