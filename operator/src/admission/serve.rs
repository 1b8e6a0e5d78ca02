//! Serving the webhook over HTTPS, as the API server requires, from a certificate and
//! key in a folder (`tls.crt`, `tls.key`: the layout of a `kubernetes.io/tls` Secret
//! mounted into the pod, which cert-manager renews in place). The files are read
//! again whenever they change, so a renewed certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

/// How often the certificate files are checked for a renewal.
const RELOAD_CHECK: Duration = Duration::from_secs(60);

/// Where the webhook listens and what it proves itself with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTls {
    /// Folder with `tls.crt` (the chain, PEM) and `tls.key` (PEM).
    pub cert_dir: PathBuf,
}

impl WebhookTls {
    fn cert(&self) -> PathBuf {
        self.cert_dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.cert_dir.join("tls.key")
    }
}

/// Resolves once the certificate and key files exist (the operator is making them).
pub async fn wait_for_files(tls: &WebhookTls) {
    while !(tls.cert().is_file() && tls.key().is_file()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serves `router` over TLS on `listener` until `handle` is told to shut down. Fails
/// at once when the certificate cannot be read.
pub async fn serve_webhook(
    listener: std::net::TcpListener,
    tls: WebhookTls,
    router: Router,
    handle: Handle,
) -> std::io::Result<()> {
    serve_checking_every(listener, tls, router, handle, RELOAD_CHECK).await
}

async fn serve_checking_every(
    listener: std::net::TcpListener,
    tls: WebhookTls,
    router: Router,
    handle: Handle,
    reload_check: Duration,
) -> std::io::Result<()> {
    anneal_crds::storage::install_crypto_provider();
    let config = RustlsConfig::from_pem_file(tls.cert(), tls.key()).await?;
    let reloading = tokio::spawn(reload_on_change(config.clone(), tls, reload_check));
    listener.set_nonblocking(true)?;
    let served = axum_server::from_tcp_rustls(listener, config)
        .handle(handle)
        .serve(router.into_make_service())
        .await;
    reloading.abort();
    served
}

/// Reloads `config` from the files whenever their modification time changes.
async fn reload_on_change(config: RustlsConfig, tls: WebhookTls, every: Duration) {
    let mut seen = modified(&tls.cert());
    loop {
        tokio::time::sleep(every).await;
        let now = modified(&tls.cert());
        if now == seen {
            continue;
        }
        match config.reload_from_pem_file(tls.cert(), tls.key()).await {
            Ok(()) => {
                tracing::info!(cert = %tls.cert().display(), "the webhook's certificate was renewed");
                seen = now;
            }
            // Mid-write (the kubelet swaps the Secret's files): tried again next time.
            Err(error) => tracing::warn!(%error, "reading the renewed webhook certificate"),
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{AccessReviewer, Reference, admission_router};
    use crate::config::OperatorConfig;
    use k8s_openapi::api::authentication::v1::UserInfo;

    #[derive(Clone)]
    struct AllowAll;

    impl AccessReviewer for AllowAll {
        async fn may_get(&self, _: &UserInfo, _: &str, _: &Reference) -> Result<bool, kube::Error> {
            Ok(true)
        }
    }

    /// A CA and a serving certificate for `localhost` signed by it, written as
    /// `tls.crt`/`tls.key` into `dir`; returns the CA's PEM.
    fn write_certificate(dir: &Path, serial: u64) -> String {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("test CA {serial}"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        ca.pem()
    }

    fn client_trusting(ca_pem: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn the_webhook_answers_over_tls_and_serves_a_renewed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first_ca = write_certificate(dir.path(), 1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = Handle::new();
        let tls = WebhookTls {
            cert_dir: dir.path().to_owned(),
        };
        let router = admission_router(AllowAll, OperatorConfig::default());
        let server = tokio::spawn(serve_checking_every(
            listener,
            tls,
            router,
            handle.clone(),
            Duration::from_millis(20),
        ));
        handle.listening().await.unwrap();

        let url = format!("https://localhost:{port}/validate/finetunejobs");
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "r-1",
                "kind": {"group": "anneal.dev", "version": "v1alpha1", "kind": "FineTuneJob"},
                "resource": {"group": "anneal.dev", "version": "v1alpha1", "resource": "finetunejobs"},
                "namespace": "team-a", "operation": "DELETE",
                "userInfo": {"username": "alice"}, "object": null, "oldObject": null
            }
        });
        let post = |ca: &str| {
            client_trusting(ca)
                .post(&url)
                .header("content-type", "application/json")
                .body(review.to_string())
                .send()
        };
        let bytes = post(&first_ca).await.unwrap().bytes().await.unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(answer["response"]["uid"], "r-1");
        assert_eq!(answer["response"]["allowed"], true);

        // A renewal under a new CA: served once the files change, without a restart.
        std::thread::sleep(Duration::from_millis(20));
        let second_ca = write_certificate(dir.path(), 2);
        tokio::time::timeout(Duration::from_secs(5), async {
            while post(&second_ca).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the renewed certificate is served");
        assert!(
            post(&first_ca).await.is_err(),
            "the old certificate is gone"
        );
        handle.graceful_shutdown(Some(Duration::from_secs(1)));
        server.await.unwrap().unwrap();
    }
}
