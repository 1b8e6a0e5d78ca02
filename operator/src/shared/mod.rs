//! What the controllers build on: the context of the two without report state, status conditions, the hub check, the image policy, server-side apply of status,
//! the pod parts every planned pod shares, SubjectAccessReviews, and (in tests) snapshot comparison.

pub mod conditions;
pub mod controller_context;
pub mod controller_watch;
pub mod hub_check;
pub mod image_policy;
pub mod pod_parts;
pub mod status_apply;
pub mod subject_access_review;
#[cfg(test)]
pub mod test_snapshot;
