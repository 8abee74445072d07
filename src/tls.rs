//! TLS client configuration shared by the IMAP poller and the outbound relay:
//! rustls with the ring provider, the system's roots, plus an optional PEM file.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A client configuration trusting the system roots and `extra_ca` (PEM).
///
/// # Errors
/// The CA file cannot be read or holds no usable certificate, or rustls
/// refuses the protocol versions; the message names the file.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(file) = extra_ca {
        let bad = |e: &dyn std::fmt::Display| format!("ca_file {}: {e}", file.display());
        for cert in CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
