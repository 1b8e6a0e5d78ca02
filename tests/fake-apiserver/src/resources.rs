//! The resource types the fake API server knows: their group, version, plural,
//! kind, scope and whether they have a `status` subresource. A request for any
//! other resource is answered 404, as a real server without that CRD would.

/// One served resource type (one group/version/plural).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    pub version: String,
    /// Lower-case plural as it appears in URLs, e.g. `finetunejobs`.
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    /// Whether `/status` exists; it also decides which part of the object the main
    /// resource may change (see the module documentation).
    pub status_subresource: bool,
}

impl ResourceType {
    /// A namespaced resource type.
    pub fn namespaced(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced: true,
            status_subresource: false,
        }
    }

    /// A cluster-scoped resource type.
    pub fn cluster_scoped(group: &str, version: &str, plural: &str, kind: &str) -> Self {
        Self {
            namespaced: false,
            ..Self::namespaced(group, version, plural, kind)
        }
    }

    /// The same type with a `status` subresource.
    pub fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How error messages name the resource: `pods`, `jobs.batch`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether deleting an object of this type without a `propagationPolicy` orphans
    /// its dependents. batch/v1 Jobs keep the legacy default of the real API server
    /// (OrphanDependents), which is why clients that mean to remove a Job's Pods pass
    /// `Background` explicitly.
    pub fn orphans_by_default(&self) -> bool {
        self.group == "batch" && self.plural == "jobs"
    }
}

/// The set of served resource types.
#[derive(Clone, Debug)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Default for Registry {
    /// What Anneal's operator and its tests use.
    fn default() -> Self {
        let ns = ResourceType::namespaced;
        let types = vec![
            ResourceType::cluster_scoped("", "v1", "namespaces", "Namespace").with_status(),
            ns("", "v1", "pods", "Pod").with_status(),
            ns("", "v1", "secrets", "Secret"),
            ns("", "v1", "configmaps", "ConfigMap"),
            ns("", "v1", "services", "Service").with_status(),
            ns("", "v1", "events", "Event"),
            ns("events.k8s.io", "v1", "events", "Event"),
            ns("batch", "v1", "jobs", "Job").with_status(),
            ns("apps", "v1", "deployments", "Deployment").with_status(),
            ns("coordination.k8s.io", "v1", "leases", "Lease"),
            ns("anneal.dev", "v1alpha1", "finetunejobs", "FineTuneJob").with_status(),
            ns(
                "anneal.dev",
                "v1alpha1",
                "modeldeployments",
                "ModelDeployment",
            )
            .with_status(),
            ns(
                "anneal.dev",
                "v1alpha1",
                "modelevaluations",
                "ModelEvaluation",
            )
            .with_status(),
        ];
        Self { types }
    }
}

impl Registry {
    /// Adds a type, replacing one with the same group, version and plural.
    pub fn register(&mut self, resource: ResourceType) {
        self.types.retain(|t| {
            !(t.group == resource.group
                && t.version == resource.version
                && t.plural == resource.plural)
        });
        self.types.push(resource);
    }

    /// The type served at `group/version/plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// The type of objects with this `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
    }

    /// All types, in registration order.
    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }
}
