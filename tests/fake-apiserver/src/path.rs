//! Splits a request path into what it addresses: discovery documents, or a
//! resource collection / object / subresource, namespaced or across namespaces.

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/{group}/{version}`: the resources of one group version.
    GroupVersion { group: String, version: String },
    /// Anything under a resource.
    Resource(Target),
}

/// A resource collection, object or subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// `None` for cluster-scoped types and for lists/watches across all namespaces.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a path (without query); `None` for paths the API does not have.
pub fn parse(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["api", version, rest @ ..] => under_group_version("", version, rest),
        ["apis", group, version, rest @ ..] => under_group_version(group, version, rest),
        _ => None,
    }
}

fn under_group_version(group: &str, version: &str, rest: &[&str]) -> Option<Route> {
    if rest.is_empty() {
        return Some(Route::GroupVersion {
            group: group.to_owned(),
            version: version.to_owned(),
        });
    }
    // `namespaces/{ns}/{plural}/...` is a namespaced resource, but
    // `namespaces/{name}/status` is the Namespace object's own subresource.
    let (namespace, resource_part) = match rest {
        ["namespaces", ns, plural, ..] if !matches!(*plural, "status" | "finalize") => {
            (Some((*ns).to_owned()), &rest[2..])
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match resource_part {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Route::Resource(Target {
        group: group.to_owned(),
        version: version.to_owned(),
        plural: plural.to_owned(),
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path) {
            Some(Route::Resource(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_object_status() {
        let t = target("/apis/anneal.dev/v1alpha1/namespaces/ns/finetunejobs/a/status");
        assert_eq!(
            (
                t.group.as_str(),
                t.plural.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (
                "anneal.dev",
                "finetunejobs",
                Some("ns"),
                Some("a"),
                Some("status")
            )
        );
    }

    #[test]
    fn core_all_namespaces_and_namespace_objects() {
        let t = target("/api/v1/pods");
        assert_eq!((t.group.as_str(), t.namespace, t.name), ("", None, None));
        let t = target("/api/v1/namespaces/team-a");
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("team-a"))
        );
        let t = target("/api/v1/namespaces/team-a/status");
        assert_eq!(
            (t.plural.as_str(), t.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = target("/api/v1/namespaces/team-a/configmaps");
        assert_eq!(
            (t.plural.as_str(), t.namespace.as_deref()),
            ("configmaps", Some("team-a"))
        );
    }

    #[test]
    fn discovery_and_unknown() {
        assert_eq!(parse("/apis"), Some(Route::Groups));
        assert_eq!(
            parse("/apis/batch/v1"),
            Some(Route::GroupVersion {
                group: "batch".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/healthz"), None);
        assert_eq!(parse("/api/v1/namespaces/a/pods/b/c/d"), None);
    }
}
