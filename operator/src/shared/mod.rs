//! What both controllers build on: status conditions, server-side apply of status,
//! the pod parts every planned pod shares, and (in tests) snapshot comparison.

pub mod conditions;
pub mod pod_parts;
pub mod status_apply;
#[cfg(test)]
pub mod test_snapshot;
