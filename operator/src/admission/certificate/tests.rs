//! The operator's own webhook certificate against the fake API server: made once and
//! put into the webhook configuration, served over TLS to a client that trusts only
//! that `caBundle`, replaced near its end under the same CA, and made once when two
//! replicas start together.

use std::path::Path;

use anneal_fake_apiserver::{FakeApiServer, ResourceType};
use axum::Router;
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::PostParams;
use serde_json::json;

use super::*;

const HOST: &str = "anneal-webhook.anneal-system.svc";

fn settings() -> OperatorCertificate {
    OperatorCertificate {
        namespace: "anneal-system".into(),
        secret: "anneal-webhook-tls".into(),
        hosts: vec![HOST.into(), format!("{HOST}.cluster.local")],
        configuration: "anneal".into(),
    }
}

/// An API server with the chart's webhook configuration, its caBundle empty.
async fn api() -> FakeApiServer {
    let server = FakeApiServer::start().await;
    server.register(ResourceType::cluster_scoped(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
    ));
    let webhooks: Vec<serde_json::Value> = ["finetunejobs", "modeldeployments"]
        .map(|plural| {
            json!({
                "name": format!("{plural}.anneal.dev"),
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "clientConfig": {"service": {"name": "anneal-webhook", "namespace": "anneal-system",
                    "path": format!("/validate/{plural}"), "port": 443}},
            })
        })
        .to_vec();
    let configuration: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "anneal"},
        "webhooks": webhooks,
    }))
    .unwrap();
    Api::<ValidatingWebhookConfiguration>::all(server.client())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap();
    server
}

fn bundles(server: &FakeApiServer) -> Vec<Option<String>> {
    let configuration: ValidatingWebhookConfiguration = server.get("", "anneal").unwrap();
    configuration
        .webhooks
        .unwrap()
        .into_iter()
        .map(|w| {
            w.client_config
                .ca_bundle
                .map(|b| String::from_utf8(b.0).unwrap())
        })
        .collect()
}

/// Serves "ok" over TLS from the serving pair in `dir`; the port.
async fn serve(dir: &Path) -> u16 {
    anneal_crds::storage::install_crypto_provider();
    let config = RustlsConfig::from_pem_file(dir.join("tls.crt"), dir.join("tls.key"))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let router = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(axum_server::from_tcp_rustls(listener, config).serve(router.into_make_service()));
    port
}

/// What a client that trusts only `bundle`, calling the webhook's service name, gets.
async fn call(bundle: &str, port: u16) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(bundle.as_bytes()).unwrap()])
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    client
        .get(format!("https://{HOST}:{port}/"))
        .send()
        .await?
        .text()
        .await
}

#[tokio::test]
async fn the_operator_makes_its_certificate_puts_its_ca_in_the_webhooks_and_serves_it() {
    let server = api().await;
    let client = server.client();
    let now = Timestamp::now();
    let files = ensure_certificate(&client, &settings(), now).await.unwrap();
    assert_eq!(
        bundles(&server),
        [Some(files.ca_cert.clone()), Some(files.ca_cert.clone())]
    );
    let secret: Secret = server.get("anneal-system", "anneal-webhook-tls").unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    // A year, to the day the certificate says.
    let days = files.not_after.duration_since(now).as_hours() / 24;
    assert!((363..=365).contains(&days), "{days} days");

    // Served from the files, it verifies against the bundle for the service's name.
    let dir = tempfile::tempdir().unwrap();
    assert!(write_files(dir.path(), &files).unwrap());
    assert!(!write_files(dir.path(), &files).unwrap(), "unchanged");
    let port = serve(dir.path()).await;
    assert_eq!(call(&files.ca_cert, port).await.unwrap(), "ok");
    let stranger = make_certificate(&settings().hosts, now).unwrap();
    assert!(
        call(&stranger.ca_cert, port).await.is_err(),
        "another CA is not trusted"
    );

    // Checked again, nothing changes.
    let version = secret.metadata.resource_version.clone();
    let again = ensure_certificate(&client, &settings(), now).await.unwrap();
    assert_eq!(again, files);
    let secret: Secret = server.get("anneal-system", "anneal-webhook-tls").unwrap();
    assert_eq!(secret.metadata.resource_version, version);
}

#[tokio::test]
async fn a_certificate_near_its_end_is_replaced_under_the_same_ca() {
    let server = api().await;
    let client = server.client();
    let first = ensure_certificate(&client, &settings(), Timestamp::now())
        .await
        .unwrap();
    // 29 days before it ends: inside the 30-day window.
    let later = first.not_after - SignedDuration::from_hours(24 * 29);
    let renewed = ensure_certificate(&client, &settings(), later)
        .await
        .unwrap();
    assert_ne!(renewed.cert, first.cert);
    assert_ne!(renewed.key, first.key);
    assert_eq!(
        renewed.ca_cert, first.ca_cert,
        "the CA the API server trusts stays"
    );
    assert!(renewed.not_after > first.not_after);
    let secret: Secret = server.get("anneal-system", "anneal-webhook-tls").unwrap();
    assert_eq!(
        secret.metadata.annotations.unwrap()[NOT_AFTER_ANNOTATION],
        renewed.not_after.to_string()
    );
    let bundle = bundles(&server)[0].clone().unwrap();
    assert_eq!(bundle, first.ca_cert);
    // A certificate signed again from the stored CA key verifies against the bundle
    // already in place (signed for today, since the client checks against the clock).
    let resigned = sign_serving(
        &first.ca_cert,
        &first.ca_key,
        &settings().hosts,
        Timestamp::now(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &resigned).unwrap();
    let port = serve(dir.path()).await;
    assert_eq!(call(&bundle, port).await.unwrap(), "ok");
}

#[tokio::test]
async fn replicas_starting_together_make_one_certificate() {
    let server = api().await;
    let (client_a, client_b) = (server.client(), server.client());
    let now = Timestamp::now();
    let (settings_a, settings_b) = (settings(), settings());
    let (a, b) = tokio::join!(
        ensure_certificate(&client_a, &settings_a, now),
        ensure_certificate(&client_b, &settings_b, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both serve the one that was written");
    let secret: Secret = server.get("anneal-system", "anneal-webhook-tls").unwrap();
    assert_eq!(read_secret(&secret).unwrap(), a);
    let creates = server
        .writes_to("secrets", "anneal-system", "anneal-webhook-tls", None)
        .into_iter()
        .filter(|w| w.verb == "create" && w.code == 201)
        .count();
    assert_eq!(creates, 1);
}
