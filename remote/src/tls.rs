//! TLS configurations for both ends, from PEM: TLS 1.3 only, rustls with the ring provider
//! (no aws-lc: the image's binaries are static glibc builds), the fleet CA as the only root.
//!
//! The node requires a client certificate chaining to the fleet CA with clientAuth, inside
//! its validity window (rustls's `WebPkiClientVerifier`); the client checks the node's
//! certificate against the node name it meant (serverAuth, SAN match), never just "some
//! certificate of the fleet CA". Session resumption is off on the node, so every connection
//! runs the full verification against the clock and the current CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A credential file could not be read.
    #[error("cannot read {what} {path}")]
    Read {
        /// Which credential.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// PEM text without the expected object.
    #[error("{what}: no usable PEM ({detail})")]
    Pem {
        /// Which credential.
        what: &'static str,
        /// The parser's word.
        detail: String,
    },
    /// rustls refused the configuration (bad key, key not matching the certificate, …).
    #[error("TLS configuration: {0}")]
    Rustls(#[source] rustls::Error),
    /// The client verifier could not be built (no usable CA certificate).
    #[error("client certificate verifier: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The CA that vouches for the other end, and this end's certificate chain and key.
#[derive(Debug)]
pub struct Credentials {
    /// Fleet CA certificates (trust anchors).
    pub ca: Vec<CertificateDer<'static>>,
    /// This end's certificate, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// This end's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Credentials {
    fn clone(&self) -> Self {
        Credentials {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if v.is_empty() {
        return Err(TlsError::Pem {
            what,
            detail: "no CERTIFICATE block".into(),
        });
    }
    Ok(v)
}

impl Credentials {
    /// From PEM text: the CA certificate(s), this end's certificate chain, its key.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<Credentials, TlsError> {
        Ok(Credentials {
            ca: certs("CA certificate", ca)?,
            chain: certs("certificate", cert)?,
            key: PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| TlsError::Pem {
                what: "private key",
                detail: e.to_string(),
            })?,
        })
    }

    /// From PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Credentials, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        Credentials::from_pem(
            &read("CA certificate", ca)?,
            &read("certificate", cert)?,
            &read("private key", key)?,
        )
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone()).map_err(TlsError::Rustls)?;
        }
        Ok(Arc::new(roots))
    }
}

/// rustls's ring provider: the one crypto provider of berth's TLS.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's configuration: TLS 1.3 only, a client certificate of the fleet CA required.
pub fn server_config(creds: &Credentials) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(creds.roots()?, provider())
            .build()
            .map_err(TlsError::Verifier)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(TlsError::Rustls)?;
    // No resumption: a resumed session skips the chain and validity checks.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// The client's configuration: TLS 1.3 only, the fleet CA as the only root, this client's
/// certificate offered. The node's name is checked per connection
/// ([`crate::client::connect`]).
pub fn client_config(creds: &Credentials) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = Arc::unwrap_or_clone(creds.roots()?);
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots)
        .with_client_auth_cert(creds.chain.clone(), creds.key.clone_key())
        .map_err(TlsError::Rustls)?;
    Ok(Arc::new(cfg))
}
