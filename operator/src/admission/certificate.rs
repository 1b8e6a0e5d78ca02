//! The webhook's certificate, made and rotated by the operator itself (the chart's
//! `webhook.certificate: operator`): a CA of ten years and a serving certificate of
//! one, signed by it, kept in a `kubernetes.io/tls` Secret in the operator's namespace
//! with the CA's key (`ca.key`), so a replaced serving certificate keeps the CA the API
//! server already trusts. The operator puts that CA into its
//! ValidatingWebhookConfiguration's `caBundle`, and every replica writes the Secret's
//! serving pair into its certificate folder, which `serve.rs` reloads. Replicas race
//! safely: creates and replacements carry the resourceVersion they read, and the
//! loser reads the winner's Secret.
//!
//! A serving certificate within 30 days of its end is replaced. The CA itself is made
//! again only when its key or certificate is missing; ten years on, a new CA needs a
//! new install (or deleting the Secret), which is said in docs/security.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anneal_crds::jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

/// Lifetimes and when a serving certificate is replaced.
pub const CA_DAYS: i64 = 3650;
pub const SERVING_DAYS: i64 = 365;
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// When the serving certificate in the Secret ends (RFC 3339): written by the operator
/// beside it, so that it is known without parsing X.509.
pub const NOT_AFTER_ANNOTATION: &str = "anneal.dev/serving-not-after";
/// The CA's subject; a serving certificate signed again names it as its issuer.
const CA_NAME: &str = "anneal-operator webhook CA";

/// Where the operator keeps the certificate and whom it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorCertificate {
    /// The Secret, in `namespace`.
    pub namespace: String,
    pub secret: String,
    /// The names the API server reaches the webhook at (`SERVICE.NAMESPACE.svc`).
    pub hosts: Vec<String>,
    /// The ValidatingWebhookConfiguration whose `caBundle` the CA goes into.
    pub configuration: String,
}

/// The PEM files of the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    pub not_after: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("making the certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the certificate Secret {0} kept changing while it was being written")]
    Contended(String),
    #[error("writing the certificate files: {0}")]
    Files(#[from] std::io::Error),
}

fn rcgen_time(at: Timestamp) -> time::OffsetDateTime {
    let date = at.to_zoned(anneal_crds::jiff::tz::TimeZone::UTC).date();
    rcgen::date_time_ymd(i32::from(date.year()), date.month() as u8, date.day() as u8)
}

fn ca_params(now: Timestamp) -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, CA_NAME);
    params.not_before = rcgen_time(now - SignedDuration::from_hours(24));
    params.not_after = rcgen_time(now + SignedDuration::from_hours(24 * CA_DAYS));
    Ok(params)
}

/// A new CA, and a serving certificate for `hosts` signed by it.
pub fn make_certificate(
    hosts: &[String],
    now: Timestamp,
) -> Result<CertificateFiles, CertificateError> {
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params(now)?.self_signed(&ca_key)?.pem();
    sign_serving(&ca_cert, &ca_key.serialize_pem(), hosts, now)
}

/// A serving certificate for `hosts` signed by the CA of `ca_key` (whose certificate
/// is `ca_cert`, made by [`make_certificate`]).
pub fn sign_serving(
    ca_cert: &str,
    ca_key: &str,
    hosts: &[String],
    now: Timestamp,
) -> Result<CertificateFiles, CertificateError> {
    let signing_key = rcgen::KeyPair::from_pem(ca_key)?;
    // The issuer is named by the CA's subject and identified by its key: both are
    // what the CA certificate holds, so the chain verifies against it.
    let issuer = rcgen::Issuer::new(ca_params(now)?, signing_key);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        hosts.first().cloned().unwrap_or_default(),
    );
    let not_after = now + SignedDuration::from_hours(24 * SERVING_DAYS);
    params.not_before = rcgen_time(now - SignedDuration::from_hours(24));
    params.not_after = rcgen_time(not_after);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertificateFiles {
        ca_cert: ca_cert.to_owned(),
        ca_key: ca_key.to_owned(),
        cert: cert.pem(),
        key: key.serialize_pem(),
        // The date the certificate says, at midnight UTC: never later than it ends.
        not_after: Timestamp::from_second(rcgen_time(not_after).unix_timestamp())
            .unwrap_or(not_after),
    })
}

/// What the Secret holds, if all of it is there.
fn read_secret(secret: &Secret) -> Option<CertificateFiles> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    let not_after = secret
        .metadata
        .annotations
        .as_ref()?
        .get(NOT_AFTER_ANNOTATION)?
        .parse()
        .ok()?;
    Some(CertificateFiles {
        ca_cert: text("ca.crt")?,
        ca_key: text("ca.key")?,
        cert: text("tls.crt")?,
        key: text("tls.key")?,
        not_after,
    })
}

fn secret_of(files: &CertificateFiles, name: &str, resource_version: Option<String>) -> Secret {
    let data = [
        ("ca.crt", &files.ca_cert),
        ("ca.key", &files.ca_key),
        ("tls.crt", &files.cert),
        ("tls.key", &files.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version,
            annotations: Some(BTreeMap::from([(
                NOT_AFTER_ANNOTATION.to_owned(),
                files.not_after.to_string(),
            )])),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "anneal-operator".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The certificate to serve: the Secret's while it has more than
/// [`RENEW_BEFORE_DAYS`] left, else a new serving certificate from its CA (a new CA
/// when it has none), written back. Then the CA goes into the webhook configuration.
pub async fn ensure_certificate(
    client: &Client,
    settings: &OperatorCertificate,
    now: Timestamp,
) -> Result<CertificateFiles, CertificateError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &settings.namespace);
    let renew_at = now + SignedDuration::from_hours(24 * RENEW_BEFORE_DAYS);
    for _ in 0..5 {
        let found = secrets.get_opt(&settings.secret).await?;
        let held = found.as_ref().and_then(read_secret);
        if let Some(files) = &held
            && files.not_after > renew_at
        {
            put_ca_bundle(client, settings, &files.ca_cert).await?;
            return Ok(files.clone());
        }
        let files = match &held {
            Some(old) => sign_serving(&old.ca_cert, &old.ca_key, &settings.hosts, now)?,
            None => make_certificate(&settings.hosts, now)?,
        };
        let written = match found {
            Some(existing) => {
                let version = existing.metadata.resource_version.clone();
                let secret = secret_of(&files, &settings.secret, version);
                secrets
                    .replace(&settings.secret, &PostParams::default(), &secret)
                    .await
            }
            None => {
                let secret = secret_of(&files, &settings.secret, None);
                secrets.create(&PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => {
                info!(secret = %settings.secret, not_after = %files.not_after, "wrote the webhook's serving certificate");
                put_ca_bundle(client, settings, &files.ca_cert).await?;
                return Ok(files);
            }
            // Another replica wrote it first: serve what it wrote.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(CertificateError::Contended(settings.secret.clone()))
}

/// Puts `ca_cert` into every webhook of the configuration that lacks it.
async fn put_ca_bundle(
    client: &Client,
    settings: &OperatorCertificate,
    ca_cert: &str,
) -> Result<(), CertificateError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let bundle = ByteString(ca_cert.as_bytes().to_vec());
    for _ in 0..5 {
        let Some(mut configuration) = api.get_opt(&settings.configuration).await? else {
            warn!(configuration = %settings.configuration, "the webhook configuration is missing; the API server cannot call the webhook");
            return Ok(());
        };
        let webhooks = configuration.webhooks.get_or_insert_with(Vec::new);
        if webhooks
            .iter()
            .all(|w| w.client_config.ca_bundle.as_ref() == Some(&bundle))
        {
            return Ok(());
        }
        for webhook in webhooks.iter_mut() {
            webhook.client_config.ca_bundle = Some(bundle.clone());
        }
        match api
            .replace(
                &settings.configuration,
                &PostParams::default(),
                &configuration,
            )
            .await
        {
            Ok(_) => {
                info!(configuration = %settings.configuration, "put the webhook's CA into its configuration");
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(CertificateError::Contended(settings.configuration.clone()))
}

/// Writes the serving pair where `serve.rs` reads it, when it differs.
pub fn write_files(dir: &Path, files: &CertificateFiles) -> Result<bool, CertificateError> {
    let cert = dir.join("tls.crt");
    if std::fs::read_to_string(&cert).is_ok_and(|held| held == files.cert) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    // The key first: a reload between the two writes reads a new key with the old
    // certificate, fails, and keeps serving the old pair until the next check.
    std::fs::write(dir.join("tls.key"), &files.key)?;
    std::fs::write(cert, &files.cert)?;
    Ok(true)
}

#[cfg(test)]
mod tests;

/// How often the certificate is checked once it is served, and after a failure.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Keeps the certificate in `dir` current: at once, then every [`CHECK_EVERY`].
pub async fn keep_certificate(
    client: Client,
    settings: OperatorCertificate,
    dir: std::path::PathBuf,
) {
    loop {
        let wait = match ensure_certificate(&client, &settings, Timestamp::now()).await {
            Ok(files) => match write_files(&dir, &files) {
                Ok(_) => CHECK_EVERY,
                Err(error) => {
                    warn!(%error, "writing the webhook's certificate files");
                    RETRY_AFTER
                }
            },
            Err(error) => {
                warn!(%error, "keeping the webhook's certificate");
                RETRY_AFTER
            }
        };
        tokio::time::sleep(wait).await;
    }
}
