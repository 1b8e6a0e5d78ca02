//! The one TLS crypto provider of every HTTP client Anneal builds (object storage, the
//! trainer's reports, kube's client): ring. reqwest, built without its aws-lc-rs
//! default, panics on a client built before a provider is installed, so every
//! place that builds one calls [`install_crypto_provider`] first.

use std::sync::Once;

/// Installs ring as the process's rustls provider; later calls do nothing.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
