//! CA bundles the daemon trusts when it is the client: the store's PostgreSQL server and
//! the database servers product secrets rotate on. Only the bundle named is trusted, never
//! the system's roots: these servers normally carry certificates of a private CA.

use crate::error::{Error, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use std::path::Path;

/// The certificates of the PEM bundle at `path`; `what` names the setting in errors.
pub fn roots(path: &Path, what: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::Config(format!("{what}: {}: {e}", path.display())))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| Error::Config(format!("{what}: {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Config(format!(
            "{what}: {} holds no certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// A TLS client configuration trusting `roots` only, with the process's crypto provider.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_bundle_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            match roots(&path, "store.tls_ca") {
                Err(Error::Config(m)) => assert!(m.starts_with("store.tls_ca: "), "{m}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }
}
