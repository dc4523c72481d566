//! Certificates and keys as PEM, the subject dsops uses, and certificate signing requests: a key
//! is made where it is used and only its CSR leaves the host.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

/// Why key material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        source: std::io::Error,
    },
    /// A certificate or CSR is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

/// The subject dsops gives its certificates: O=dsops, CN=`common_name`.
pub fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dsops");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The first certificate of a PEM text, as DER.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| PkiError::Invalid(format!("not a PEM certificate: {e}")))
}

/// A DER certificate as PEM.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Signs `message` with a private key (PEM; an operator's ECDSA P-256 key): the signature, DER.
pub fn sign_message(key_pem: &str, message: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rcgen::SigningKey;
    let key = KeyPair::from_pem(key_pem)?;
    Ok(key.sign(message)?)
}

/// Whether `signature` (DER) over `message` was made by the key `cert_pem` certifies (ECDSA
/// P-256 with SHA-256, as operator keys are; Ed25519 too). Checks the signature only: whether
/// the certificate is trusted is the caller's business.
pub fn verify_message(cert_pem: &str, message: &[u8], signature: &[u8]) -> Result<(), PkiError> {
    use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::Invalid(format!("not a certificate: {e}")))?;
    let spki = cert.public_key();
    let key = spki.subject_public_key.data.as_ref();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let verified = match algorithm.as_str() {
        // id-ecPublicKey (the curve is P-256 for every key dsops makes; another curve fails here).
        "1.2.840.10045.2.1" => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key).verify(message, signature)
        }
        "1.3.101.112" => UnparsedPublicKey::new(&ED25519, key).verify(message, signature),
        other => {
            return Err(PkiError::Invalid(format!("unsupported key algorithm {other}")));
        }
    };
    verified.map_err(|_| PkiError::Invalid("the signature does not verify".into()))
}

/// A certificate and its private key (a node's, an operator's or an agent's), PEM. `Debug`
/// never shows the key.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Creates a CSR for a new key (the key never leaves the node).
pub fn new_csr(common_name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a failure is the report.
    use super::*;

    #[test]
    fn a_signature_verifies_against_its_certificate_only() {
        let make = || {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::default().self_signed(&key).unwrap();
            CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
        };
        let (alice, bob) = (make(), make());
        let signature = sign_message(&alice.key_pem, b"approve run-1").unwrap();
        assert!(verify_message(&alice.cert_pem, b"approve run-1", &signature).is_ok());
        assert!(verify_message(&alice.cert_pem, b"approve run-2", &signature).is_err());
        assert!(verify_message(&bob.cert_pem, b"approve run-1", &signature).is_err());
        assert!(verify_message("junk", b"x", &signature).is_err());
        let der = pem_to_der(&alice.cert_pem).unwrap();
        assert_eq!(pem_to_der(&certificate_pem(&der)).unwrap(), der);
    }
}
