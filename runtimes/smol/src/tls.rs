//! TLS for dialling `wss://` and `https://` peers (the `tls` feature): the web's root
//! certificates (webpki-roots, so no system store is needed), plus any in a PEM file the program
//! names (a relay with a private or self-signed certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The client configuration for TLS peers: webpki's roots and those in the PEM file `extra`.
fn client_config(extra: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        let mut added = 0;
        for cert in
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "{}: no certificate in it (PEM expected)",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl crate::dial::TlsDial {
    /// Dials TLS peers trusting the web's roots, and the certificates of the PEM file
    /// `extra_roots` if given (a relay with a private or self-signed certificate).
    pub fn new(extra_roots: Option<&Path>) -> Result<crate::dial::TlsDial, String> {
        Ok(crate::dial::TlsDial {
            config: client_config(extra_roots)?,
            _private: (),
        })
    }

    /// The rustls configuration it dials with (for a program that opens TLS streams itself).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

/// The name a peer's certificate must carry: its host name or IP address.
pub(crate) fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a name TLS can check: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        assert!(client_config(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(client_config(Some(&empty))
            .unwrap_err()
            .contains("no certificate"));
        let missing = dir.path().join("missing.pem");
        assert!(client_config(Some(&missing)).is_err());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("relay.example").is_ok());
    }
}
