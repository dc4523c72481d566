//! Who is calling: the role and name in a verified client certificate.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::authority::pem_to_der;
use super::{ClusterPki, PkiError};

/// The trust domain a certificate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A control-plane node.
    Peer,
    /// An agent.
    Agent,
    /// An operator (the CLI).
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Peer => "peer",
            Role::Agent => "agent",
            Role::Operator => "operator",
        })
    }
}

/// The subject names of the three issuing CAs, to tell which one issued a verified certificate.
#[derive(Debug, Clone)]
pub struct RoleNames {
    names: Vec<(Role, Vec<u8>)>,
}

/// A caller identified by its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// Its trust domain.
    pub role: Role,
    /// The certificate's common name (`node-3`, `admin`, an agent id).
    pub name: String,
}

fn subject_raw(der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| PkiError::Invalid(format!("bad CA certificate: {e}")))?;
    Ok(cert.subject().as_raw().to_vec())
}

impl RoleNames {
    /// From the cluster's CAs.
    pub fn new(pki: &ClusterPki) -> Result<RoleNames, PkiError> {
        Ok(RoleNames {
            names: vec![
                (Role::Peer, subject_raw(&pem_to_der(&pki.peer.cert_pem)?)?),
                (Role::Agent, subject_raw(&pem_to_der(&pki.agent.cert_pem)?)?),
                (Role::Operator, subject_raw(&pem_to_der(&pki.operator.cert_pem)?)?),
            ],
        })
    }

    /// Identifies the leaf of a chain that TLS already verified against the cluster's CAs.
    /// `None` when there is no certificate or it was issued by none of them.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<CallerIdentity> {
        let leaf = chain.first()?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let issuer = cert.issuer().as_raw();
        let role =
            self.names.iter().find(|(_, name)| name.as_slice() == issuer).map(|(role, _)| *role)?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        Some(CallerIdentity { role, name })
    }
}
