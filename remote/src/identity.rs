//! Who is calling: the client certificate's subject CN, serial and roles, read after the
//! handshake (rustls has already verified the chain, the validity window and clientAuth).

use std::fmt;

use crate::roles::Roles;

/// Errors reading a certificate.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The handshake ended without a client certificate (cannot happen with the listener's
    /// verifier, which requires one; checked anyway).
    #[error("the client presented no certificate")]
    NoCertificate,
    /// Not an X.509 certificate.
    #[error("unreadable client certificate: {0}")]
    Parse(String),
}

/// A certificate serial in berth's one spelling: lowercase hex, no separators, no leading
/// zero bytes (`0a1b…`). Deny lists are compared in this spelling, whatever the operator
/// wrote (`0A:1B:…` works too).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(String);

impl Serial {
    /// The serial of big-endian `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Serial {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let mut s: String = bytes[start..].iter().map(|b| format!("{b:02x}")).collect();
        if s.is_empty() {
            s.push_str("00");
        }
        Serial(s)
    }

    /// Parses an operator's spelling: hex digits, optionally with `:` separators or a `0x`
    /// prefix, any case. `None` when it is not hex.
    pub fn parse(text: &str) -> Option<Serial> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let digits: String = t.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes: Vec<u8> = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).expect("checked hex"))
            .collect();
        Some(Serial::from_bytes(&bytes))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The caller of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Subject common name (`""` when the subject has none).
    pub common_name: String,
    /// Certificate serial.
    pub serial: Serial,
    /// Roles from the subject's Organization values.
    pub roles: Roles,
}

impl Identity {
    /// Reads the identity of a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Identity, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Parse(e.to_string()))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .find_map(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let roles =
            Roles::from_organizations(subject.iter_organization().filter_map(|a| a.as_str().ok()));
        Ok(Identity {
            common_name,
            serial: Serial::from_bytes(cert.raw_serial()),
            roles,
        })
    }

    /// The identity of a TLS session's peer: its first (end-entity) certificate.
    pub fn of_peer(
        certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
    ) -> Result<Identity, IdentityError> {
        let leaf = certs
            .and_then(|c| c.first())
            .ok_or(IdentityError::NoCertificate)?;
        Identity::from_der(leaf.as_ref())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CN={:?} serial={} role={}",
            self.common_name, self.serial, self.roles
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_have_one_spelling() {
        assert_eq!(Serial::from_bytes(&[0, 0x0a, 0xff]).as_str(), "0aff");
        assert_eq!(Serial::from_bytes(&[0, 0]).as_str(), "00");
        for text in ["0a:FF", "0x0aff", "aff", "00:0A:ff", " 0AFF\n"] {
            assert_eq!(Serial::parse(text).unwrap().as_str(), "0aff", "{text}");
        }
        assert!(Serial::parse("xyz").is_none());
        assert!(Serial::parse("").is_none());
    }
}
