//! What the operator itself does with a tenant's storage settings. The operator reads
//! a job's datasets, its model's `config.json` and its run's `events.jsonl` with the
//! job's credentials Secret, from the operator's own place in the network. Without a
//! rule, a tenant could point that Secret's endpoint at anything the operator can
//! reach (the API server, a cloud metadata service, another team's storage) and have
//! the operator connect there. So the operator connects only to AWS's own S3
//! endpoints (no endpoint set) and to the endpoints the install allows
//! (`allowedStorageEndpoints`), and passes on only the keys a static-credential S3
//! client needs: never the settings that make a client fetch credentials or tokens
//! from a URL or a file. Settings without static keys make unsigned requests: never
//! the operator's ambient identity (its node's instance profile, its ServiceAccount's
//! cloud role). Trainer pods are not affected: they run in the tenant's own namespace
//! with the tenant's own network position and identity.

use anneal_crds::storage::S3_ENDPOINT_KEYS;

use crate::config::OperatorConfig;

/// The keys of a credentials Secret the operator's own storage client takes, besides
/// the endpoint keys.
const PASSED_KEYS: [&str; 6] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ANNEAL_S3_VIRTUAL_HOSTED",
];

/// Whether the operator may use a job's storage settings, and which of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageAccess {
    /// The settings the operator's client is built with.
    Allowed(Vec<(String, String)>),
    /// The endpoint is not one the operator connects to; says which, for the user.
    Refused(String),
}

/// Judges a job's storage settings (from its credentials Secret) for the operator's
/// own reads.
pub fn operator_storage_access(
    settings: Vec<(String, String)>,
    config: &OperatorConfig,
) -> StorageAccess {
    let endpoint = S3_ENDPOINT_KEYS.iter().find_map(|key| {
        settings
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    });
    if let Some(endpoint) = &endpoint {
        let wanted = normalized(endpoint);
        if !config
            .allowed_storage_endpoints
            .iter()
            .any(|allowed| normalized(allowed) == wanted)
        {
            return StorageAccess::Refused(format!(
                "the operator does not connect to storage endpoint {endpoint} (not in its allowedStorageEndpoints)"
            ));
        }
    }
    let mut passed: Vec<(String, String)> = settings
        .into_iter()
        .filter(|(key, _)| {
            PASSED_KEYS.contains(&key.as_str()) || S3_ENDPOINT_KEYS.contains(&key.as_str())
        })
        .collect();
    let has_keys = passed
        .iter()
        .any(|(key, value)| key == "AWS_ACCESS_KEY_ID" && !value.is_empty());
    if !has_keys && !config.storage_operator_identity {
        // Without static keys an S3 client looks for the credentials around it: the
        // node's instance profile, the operator's own workload identity. Unless the
        // install allows it, a job must not borrow the operator's identity to read a
        // bucket its author cannot, so the operator's requests for it go unsigned
        // (public buckets only).
        passed.push((SKIP_SIGNATURE.to_owned(), "true".to_owned()));
    }
    StorageAccess::Allowed(passed)
}

/// object_store's setting for unsigned (anonymous) requests.
const SKIP_SIGNATURE: &str = "AWS_SKIP_SIGNATURE";

/// `scheme://host[:port][/path]` compared without case in scheme and host and without
/// a trailing `/`.
fn normalized(endpoint: &str) -> String {
    let endpoint = endpoint.trim().trim_end_matches('/');
    match endpoint.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        }
        None => endpoint.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config(allowed: &[&str]) -> OperatorConfig {
        OperatorConfig {
            allowed_storage_endpoints: allowed.iter().map(|a| (*a).to_owned()).collect(),
            ..OperatorConfig::default()
        }
    }

    #[test]
    fn aws_itself_is_reached_and_only_static_credentials_are_passed() {
        let tenant = settings(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://10.0.0.1/steal",
            ),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            ("AWS_METADATA_ENDPOINT", "http://169.254.169.254"),
        ]);
        let StorageAccess::Allowed(passed) = operator_storage_access(tenant, &config(&[])) else {
            panic!("no endpoint: AWS's own S3");
        };
        let keys: Vec<&str> = passed.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
        );
    }

    #[test]
    fn without_static_keys_the_operator_asks_unsigned_never_with_its_own_identity() {
        for tenant in [
            settings(&[("AWS_REGION", "eu-west-1")]),
            settings(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "x")]),
            settings(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/operator")]),
        ] {
            let StorageAccess::Allowed(passed) = operator_storage_access(tenant, &config(&[]))
            else {
                panic!("AWS's own S3 is reached");
            };
            assert!(
                passed.contains(&("AWS_SKIP_SIGNATURE".to_owned(), "true".to_owned())),
                "{passed:?}"
            );
            assert!(!passed.iter().any(|(k, _)| k == "AWS_ROLE_ARN"));
        }
        // An install that allows it reads with its own identity.
        let trusting = OperatorConfig {
            storage_operator_identity: true,
            ..config(&[])
        };
        let StorageAccess::Allowed(passed) =
            operator_storage_access(settings(&[("AWS_REGION", "eu-west-1")]), &trusting)
        else {
            panic!();
        };
        assert!(!passed.iter().any(|(k, _)| k == "AWS_SKIP_SIGNATURE"));
        let with_keys = settings(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        let StorageAccess::Allowed(passed) = operator_storage_access(with_keys, &config(&[]))
        else {
            panic!();
        };
        assert!(!passed.iter().any(|(k, _)| k == "AWS_SKIP_SIGNATURE"));
    }

    #[test]
    fn an_endpoint_is_reached_only_when_the_install_allows_it() {
        for endpoint in [
            "http://kubernetes.default.svc:443",
            "http://169.254.169.254",
            "http://minio.other-team.svc:9000",
        ] {
            let tenant = settings(&[("AWS_ENDPOINT_URL", endpoint)]);
            let StorageAccess::Refused(why) =
                operator_storage_access(tenant, &config(&["https://minio.storage.svc:9000"]))
            else {
                panic!("{endpoint} must be refused");
            };
            assert!(
                why.contains(endpoint) && why.contains("allowedStorageEndpoints"),
                "{why}"
            );
        }
        let tenant = settings(&[("S3_ENDPOINT", "HTTPS://MinIO.storage.svc:9000/")]);
        let mut unsigned = tenant.clone();
        unsigned.push(("AWS_SKIP_SIGNATURE".to_owned(), "true".to_owned()));
        assert_eq!(
            operator_storage_access(tenant, &config(&["https://minio.storage.svc:9000"])),
            StorageAccess::Allowed(unsigned)
        );
        // The most specific endpoint key wins, as in the client: it is the one judged.
        let tenant = settings(&[
            ("AWS_ENDPOINT_URL", "https://minio.storage.svc:9000"),
            ("AWS_ENDPOINT_URL_S3", "http://10.0.0.1"),
        ]);
        assert!(matches!(
            operator_storage_access(tenant, &config(&["https://minio.storage.svc:9000"])),
            StorageAccess::Refused(_)
        ));
    }
}
