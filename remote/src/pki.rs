//! The fleet PKI, for `berthctl pki` and tests: a fleet CA, node certificates
//! (DNS names and IPs as SANs, serverAuth) and client certificates per role (`O=<role>`,
//! clientAuth), each with its validity window, as PEM. rcgen with the ring backend; keys are
//! ECDSA P-256; serials are 16 random bytes.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::identity::Serial;
use crate::roles::Role;

/// Errors making certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused (bad name, unreadable key or CA certificate, …).
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being made or read.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A node certificate needs at least one name or address.
    #[error("a node certificate needs at least one DNS name or IP address")]
    NoNames,
    /// A validity window that ends before it starts.
    #[error("validity ends before it starts")]
    Validity,
}

fn rc(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { what, source }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid instant.
    pub not_before: OffsetDateTime,
    /// Last valid instant.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew between the operator's machine and nodes) for `days`.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(u64::from(days) * 86_400),
        }
    }

    /// From `not_before` (the CA's, see [`Ca::not_before`]) to `days` from now.
    pub fn since(not_before: OffsetDateTime, days: u32) -> Result<Validity, PkiError> {
        Validity::between(
            not_before,
            OffsetDateTime::now_utc() + Duration::from_secs(u64::from(days) * 86_400),
        )
    }

    /// Exactly this window (tests make expired and not-yet-valid certificates with it).
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Validity, PkiError> {
        if not_after <= not_before {
            return Err(PkiError::Validity);
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

/// A certificate and its key, as PEM, with the serial in berth's spelling (for deny lists).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8). Write it 0600.
    pub key_pem: String,
    /// Its serial.
    pub serial: Serial,
}

/// A fleet CA able to sign.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    not_before: OffsetDateTime,
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    crate::tls::provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| PkiError::Rcgen {
            what: "serial",
            source: rcgen::Error::RingUnspecified,
        })?;
    b[0] = (b[0] & 0x7f) | 0x01; // positive, and 16 bytes long in every spelling
    Ok(SerialNumber::from_slice(&b))
}

fn params(cn: &str, org: Option<&str>, validity: Validity) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.serial_number = Some(random_serial()?);
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn issued(cert: rcgen::Certificate, key: &KeyPair, serial: &SerialNumber) -> Issued {
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial: Serial::from_bytes(&serial.to_bytes()),
    }
}

impl Ca {
    /// A new self-signed fleet CA named `name`.
    pub fn create(name: &str, validity: Validity) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(rc("CA key"))?;
        let mut p = params(name, Some("berth"), validity)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.use_authority_key_identifier_extension = false;
        let cert = p.self_signed(&key).map_err(rc("CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            not_before: validity.not_before,
            issuer: Issuer::new(p, key),
        })
    }

    /// An existing CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(rc("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(rc("CA certificate"))?;
        let not_before = crate::certinfo::certificates(cert_pem)
            .ok()
            .and_then(|c| crate::certinfo::describe(&c[0]).ok())
            .map(|i| i.not_before)
            .ok_or(PkiError::Rcgen {
                what: "CA certificate",
                source: rcgen::Error::CouldNotParseCertificate,
            })?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_string(),
            not_before,
        })
    }

    /// When the CA became valid. Client certificates are best issued valid from then
    /// ([`Validity::since`]): a node without a time source never believes a time before its
    /// own credentials' start (the clock floor, docs/remote-api.md), so a client certificate
    /// made after the node's would otherwise be "not yet valid" there.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// The CA certificate (what nodes and clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (keep it off the nodes).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A node certificate: CN `name`, SANs `dns_names` and `ips`, serverAuth. A client
    /// connecting to a node checks it against the name it meant.
    pub fn issue_node(
        &self,
        name: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(PkiError::NoNames);
        }
        let mut p = params(name, Some("berth-node"), validity)?;
        for d in dns_names {
            let ia5 = d.clone().try_into().map_err(rc("DNS name"))?;
            p.subject_alt_names.push(SanType::DnsName(ia5));
        }
        p.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p, "node certificate")
    }

    /// A client certificate for `name` (CN) with `role` (O), clientAuth.
    pub fn issue_client(
        &self,
        name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let mut p = params(name, Some(role.name()), validity)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p, "client certificate")
    }

    fn sign(&self, p: CertificateParams, what: &'static str) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(rc("key"))?;
        let serial = p.serial_number.clone().expect("params() sets a serial");
        let cert = p.signed_by(&key, &self.issuer).map_err(rc(what))?;
        Ok(issued(cert, &key, &serial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn client_certificates_carry_role_name_and_serial() {
        let ca = Ca::create("fleet", Validity::days(1)).unwrap();
        let c = ca
            .issue_client("alice", Role::Operator, Validity::days(1))
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
        let id = Identity::from_der(der.as_ref()).unwrap();
        assert_eq!(id.common_name, "alice");
        assert_eq!(id.roles.to_string(), "operator");
        assert_eq!(id.serial, c.serial);
        assert_eq!(c.serial.as_str().len(), 32);
    }

    #[test]
    fn a_ca_read_back_from_pem_still_signs() {
        let ca = Ca::create("fleet", Validity::days(1)).unwrap();
        let again = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let n = again
            .issue_node(
                "node-a",
                &["node-a".into()],
                &["127.0.0.1".parse().unwrap()],
                Validity::days(1),
            )
            .unwrap();
        assert!(n.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.issue_node("x", &[], &[], Validity::days(1)).is_err());
        assert!(Validity::between(
            OffsetDateTime::now_utc(),
            OffsetDateTime::now_utc() - Duration::from_secs(1)
        )
        .is_err());
    }
}
