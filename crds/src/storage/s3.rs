//! S3 settings: the environment a trainer pod gets from its credentials Secret, turned
//! into an object_store `AmazonS3` for one bucket.
//!
//! Besides AWS's own variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_DEFAULT_REGION`, web identity and container
//! credentials, ...), we read the endpoint from `AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT` or `S3_ENDPOINT` (first set wins) and the
//! addressing style from `ANNEAL_S3_VIRTUAL_HOSTED`.

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};

/// Endpoint settings, most specific first (AWS's service-specific variable wins, as in
/// the AWS SDKs).
pub const ENDPOINT_KEYS: [&str; 4] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "S3_ENDPOINT",
];

/// `true`: `https://bucket.host/key`; `false`: `https://host/bucket/key`.
const VIRTUAL_HOSTED_KEY: &str = "ANNEAL_S3_VIRTUAL_HOSTED";

/// Settings we decide ourselves rather than pass through to object_store.
const OWN_KEYS: [&str; 3] = [
    VIRTUAL_HOSTED_KEY,
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_ALLOW_HTTP",
];

/// The process environment's storage settings: every `AWS_*` variable, `S3_ENDPOINT`
/// and `ANNEAL_S3_VIRTUAL_HOSTED`.
pub(super) fn settings_from_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(key, _)| {
            key.starts_with("AWS_") || key == "S3_ENDPOINT" || key == VIRTUAL_HOSTED_KEY
        })
        .collect()
}

/// The store for `bucket` with these settings; the error is a sentence for the user.
pub(super) fn s3_store(bucket: &str, settings: &[(String, String)]) -> Result<AmazonS3, String> {
    super::install_crypto_provider();
    s3_builder(bucket, settings)?
        .build()
        .map_err(|error| error.to_string())
}

/// The builder, kept apart from `build` so that tests can read back what was decided.
fn s3_builder(bucket: &str, settings: &[(String, String)]) -> Result<AmazonS3Builder, String> {
    // Empty values are treated as unset: Secrets often carry an empty session token.
    let setting = |key: &str| {
        settings
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let endpoint = ENDPOINT_KEYS.iter().find_map(|key| setting(key));
    let virtual_hosted = match setting(VIRTUAL_HOSTED_KEY) {
        Some(value) => parse_bool(VIRTUAL_HOSTED_KEY, value)?,
        // S3-compatible servers (MinIO, Ceph, moto) are usually reached by path;
        // AWS itself prefers the bucket in the host name.
        None => endpoint.is_none(),
    };

    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (key, value) in pass_through(settings) {
        builder = builder.with_config(key, value);
    }
    builder = builder.with_virtual_hosted_style_request(virtual_hosted);
    if let Some(endpoint) = endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        let (scheme, _) = endpoint
            .split_once("://")
            .ok_or_else(|| format!("endpoint `{endpoint}` must start with http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "endpoint `{endpoint}` must start with http:// or https://"
            ));
        }
        let endpoint = match virtual_hosted {
            // object_store expects the bucket already in a virtual-hosted endpoint.
            true => endpoint.replacen("://", &format!("://{bucket}."), 1),
            false => endpoint.to_string(),
        };
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(scheme == "http");
    }
    Ok(builder)
}

/// The `AWS_*` settings object_store knows (credentials, region, token files, ...),
/// except the endpoint and addressing ones we decide above; unknown ones (`AWS_PROFILE`,
/// `AWS_CA_BUNDLE`, ...) and empty values are skipped.
fn pass_through(settings: &[(String, String)]) -> impl Iterator<Item = (AmazonS3ConfigKey, &str)> {
    settings.iter().filter_map(|(key, value)| {
        let ours = ENDPOINT_KEYS.contains(&key.as_str()) || OWN_KEYS.contains(&key.as_str());
        if ours || value.is_empty() || !key.starts_with("AWS_") {
            return None;
        }
        let config_key = key.to_ascii_lowercase().parse().ok()?;
        Some((config_key, value.as_str()))
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key} must be true or false, not `{value}`")),
    }
}

#[cfg(test)]
mod tests {
    use object_store::ClientConfigKey;

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(builder: &AmazonS3Builder, key: AmazonS3ConfigKey) -> Option<String> {
        builder.get_config_value(&key)
    }

    #[test]
    fn an_http_endpoint_is_reached_by_path_with_http_allowed() {
        let builder = s3_builder(
            "models",
            &settings(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"),
                ("AWS_ACCESS_KEY_ID", "key"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_REGION", "eu-west-1"),
            ]),
        )
        .unwrap();
        let endpoint = config(&builder, AmazonS3ConfigKey::Endpoint);
        assert_eq!(endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        let virtual_hosted = config(&builder, AmazonS3ConfigKey::VirtualHostedStyleRequest);
        assert_eq!(virtual_hosted.as_deref(), Some("false"));
        let allow_http = config(
            &builder,
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
        );
        assert_eq!(allow_http.as_deref(), Some("true"));
        let region = config(&builder, AmazonS3ConfigKey::Region);
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        let key = config(&builder, AmazonS3ConfigKey::AccessKeyId);
        assert_eq!(key.as_deref(), Some("key"));
    }

    #[test]
    fn skip_signature_reaches_the_client_so_no_ambient_credentials_are_looked_up() {
        let builder = s3_builder("public", &settings(&[("AWS_SKIP_SIGNATURE", "true")])).unwrap();
        let skip = config(&builder, AmazonS3ConfigKey::SkipSignature);
        assert_eq!(skip.as_deref(), Some("true"));
    }

    #[test]
    fn virtual_hosted_addressing_puts_the_bucket_in_the_endpoint_host() {
        let builder = s3_builder(
            "models",
            &settings(&[
                ("S3_ENDPOINT", "https://minio.example.com"),
                (VIRTUAL_HOSTED_KEY, "true"),
            ]),
        )
        .unwrap();
        let endpoint = config(&builder, AmazonS3ConfigKey::Endpoint);
        assert_eq!(
            endpoint.as_deref(),
            Some("https://models.minio.example.com")
        );
        let allow_http = config(
            &builder,
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
        );
        assert_eq!(allow_http.as_deref(), Some("false"));
    }

    #[test]
    fn without_an_endpoint_aws_is_addressed_virtual_hosted() {
        let builder =
            s3_builder("models", &settings(&[("AWS_DEFAULT_REGION", "us-west-2")])).unwrap();
        assert_eq!(config(&builder, AmazonS3ConfigKey::Endpoint), None);
        let virtual_hosted = config(&builder, AmazonS3ConfigKey::VirtualHostedStyleRequest);
        assert_eq!(virtual_hosted.as_deref(), Some("true"));
        let region = config(&builder, AmazonS3ConfigKey::Region);
        assert_eq!(region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn the_most_specific_endpoint_wins_and_empty_values_count_as_unset() {
        let builder = s3_builder(
            "models",
            &settings(&[
                ("S3_ENDPOINT", "http://generic:1"),
                ("AWS_ENDPOINT_URL_S3", ""),
                ("AWS_ENDPOINT_URL", "http://aws-generic:2"),
                ("AWS_SESSION_TOKEN", ""),
            ]),
        )
        .unwrap();
        let endpoint = config(&builder, AmazonS3ConfigKey::Endpoint);
        assert_eq!(endpoint.as_deref(), Some("http://aws-generic:2"));
        assert_eq!(config(&builder, AmazonS3ConfigKey::Token), None);
    }

    #[test]
    fn malformed_settings_are_named() {
        let bad_bool = s3_builder("b", &settings(&[(VIRTUAL_HOSTED_KEY, "maybe")])).unwrap_err();
        assert!(bad_bool.contains("ANNEAL_S3_VIRTUAL_HOSTED"), "{bad_bool}");
        let bad_endpoint =
            s3_builder("b", &settings(&[("S3_ENDPOINT", "minio:9000")])).unwrap_err();
        assert!(bad_endpoint.contains("minio:9000"), "{bad_endpoint}");
        let ftp = s3_builder("b", &settings(&[("S3_ENDPOINT", "ftp://minio")])).unwrap_err();
        assert!(ftp.contains("http://"), "{ftp}");
    }
}
