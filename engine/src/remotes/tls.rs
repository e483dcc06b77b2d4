//! rustls client configuration for one registry endpoint: the system CA bundle (when the
//! image ships one) plus the endpoint's own CAs, its client certificates, and `skip_verify`.
//!
//! One configuration per endpoint, so two mirrors of one pull can trust different CAs — the
//! reason berth builds its own client rather than using one shared HTTP client (see
//! docs/registry-pull.md). A missing system bundle is not an error: an air-gapped node may
//! trust only the CAs its hosts.toml names, and a handshake with nothing to trust fails with a
//! certificate error naming the host rather than a panic at start-up.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::RegistryHost;

/// The CA bundle Debian's `ca-certificates` writes, and the one berth images ship.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Errors building an endpoint's TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA, certificate or key file could not be read or parsed.
    #[error("endpoint {endpoint}: {what} {}: {reason}", path.display())]
    File {
        /// The endpoint's API root.
        endpoint: String,
        /// `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("endpoint {endpoint}: TLS configuration")]
    Config {
        /// The endpoint's API root.
        endpoint: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider berth uses (ring: pure Rust plus a little C built by `cc`, which the
/// static build handles; aws-lc-rs would need cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `host`, trusting `system_bundle` (when it exists) plus the
/// host's `ca_files`.
pub fn client_config(
    host: &RegistryHost,
    system_bundle: &Path,
) -> Result<rustls::ClientConfig, TlsError> {
    let endpoint = host.base_url();
    let file_err = |what: &'static str, path: &Path, reason: String| TlsError::File {
        endpoint: endpoint.clone(),
        what,
        path: path.to_path_buf(),
        reason,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            endpoint: endpoint.clone(),
            source,
        })?;
    let builder = if host.tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        if system_bundle.exists() {
            // Individual unparsable entries in the system bundle are skipped (rustls counts
            // them); a bundle that cannot be read at all is an error.
            let certs = read_certs(system_bundle)
                .map_err(|r| file_err("system CA bundle", system_bundle, r))?;
            roots.add_parsable_certificates(certs);
        }
        for ca in &host.tls.ca_files {
            let certs = read_certs(ca).map_err(|r| file_err("CA file", ca, r))?;
            if certs.is_empty() {
                return Err(file_err("CA file", ca, "no PEM certificate in it".into()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| file_err("CA file", ca, e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match host.tls.client_certs.first() {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert).map_err(|r| file_err("client certificate", cert, r))?;
            if chain.is_empty() {
                return Err(file_err(
                    "client certificate",
                    cert,
                    "no PEM certificate in it".into(),
                ));
            }
            let key_path = key.as_deref().unwrap_or(cert);
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| file_err("client key", key_path, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Config {
                    endpoint: endpoint.clone(),
                    source,
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))
}

/// `skip_verify = true`: accepts any certificate chain and name, but still checks that the
/// handshake is signed by the key in the presented certificate (what containerd's
/// `InsecureSkipVerify` does too).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
