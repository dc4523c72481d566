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
