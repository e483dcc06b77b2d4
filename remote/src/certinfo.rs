//! Reading certificates for people and pins: what `berthctl pki show` prints (subject, role,
//! serial in the deny list's spelling, validity, names, fingerprint) and the SHA-256
//! fingerprint a PXE node pins its configuration server with (`sha256:<hex>` of the DER).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::identity::{Identity, Serial};

/// Errors reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertInfoError {
    /// No certificate in the PEM text.
    #[error("no PEM certificate ({0})")]
    Pem(String),
    /// The DER does not parse.
    #[error("cannot parse the certificate: {0}")]
    Parse(String),
}

/// `sha256:<64 hex>` of a DER certificate.
pub fn fingerprint_der(der: &[u8]) -> String {
    let hex: String = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The DER of each certificate in `pem`.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertInfoError> {
    let v = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertInfoError::Pem(e.to_string()))?;
    if v.is_empty() {
        return Err(CertInfoError::Pem("no CERTIFICATE block".into()));
    }
    Ok(v)
}

/// What a certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject, as `CN=…, O=…`.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
    /// Common name, serial and roles (from O).
    pub identity: Identity,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Subject alternative names: DNS names and IP addresses.
    pub names: Vec<String>,
    /// Whether it is a CA.
    pub is_ca: bool,
    /// Extended key usages in words (`serverAuth`, `clientAuth`).
    pub usages: Vec<&'static str>,
    /// `sha256:<hex>`.
    pub fingerprint: String,
}

/// Reads one DER certificate.
pub fn describe(der: &[u8]) -> Result<CertInfo, CertInfoError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertInfoError::Parse(e.to_string()))?;
    let identity = Identity::from_der(der).map_err(|e| CertInfoError::Parse(e.to_string()))?;
    let ts = |t: x509_parser::time::ASN1Time| t.to_datetime();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                    ),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                            .to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let mut usages = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        if eku.value.server_auth {
            usages.push("serverAuth");
        }
        if eku.value.client_auth {
            usages.push("clientAuth");
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        identity,
        not_before: ts(cert.validity().not_before),
        not_after: ts(cert.validity().not_after),
        names,
        is_ca: cert.is_ca(),
        usages,
        fingerprint: fingerprint_der(der),
    })
}

impl CertInfo {
    /// The serial in the deny list's spelling.
    pub fn serial(&self) -> &Serial {
        &self.identity.serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};
    use crate::roles::Role;

    #[test]
    fn a_client_certificate_reads_back_with_its_role_serial_and_fingerprint() {
        let ca = Ca::create("fleet", Validity::days(2)).unwrap();
        let c = ca
            .issue_client("otto", Role::Operator, Validity::days(1))
            .unwrap();
        let der = &certificates(&c.cert_pem).unwrap()[0];
        let info = describe(der).unwrap();
        assert_eq!(info.identity.common_name, "otto");
        assert_eq!(info.identity.roles.to_string(), "operator");
        assert_eq!(info.serial(), &c.serial);
        assert_eq!(info.usages, ["clientAuth"]);
        assert!(!info.is_ca);
        assert!(info.fingerprint.starts_with("sha256:") && info.fingerprint.len() == 71);
        let n = ca
            .issue_node(
                "n",
                &["n.lab".into()],
                &["10.0.0.7".parse().unwrap()],
                Validity::days(1),
            )
            .unwrap();
        let info = describe(&certificates(&n.cert_pem).unwrap()[0]).unwrap();
        assert_eq!(info.names, ["n.lab", "10.0.0.7"]);
        assert!(certificates("nothing").is_err());
    }
}
