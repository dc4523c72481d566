//! Who is calling: the role and name in a verified client certificate.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use super::ClusterPki;
use dsops_identity::PkiError;
use dsops_identity::pem_to_der;

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

/// The three issuing CAs, to tell which one issued a verified certificate.
#[derive(Debug, Clone)]
pub struct RoleNames {
    /// Each role's CA: its subject name and its public key (SubjectPublicKeyInfo, DER).
    cas: Vec<(Role, Vec<u8>, Vec<u8>)>,
}

/// A caller identified by its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// Its trust domain.
    pub role: Role,
    /// The certificate's common name (`node-3`, `admin`, an agent id).
    pub name: String,
    /// When the certificate was issued (its `not_before` plus the backdating every certificate
    /// of the cluster gets), ms since the epoch: what revocations compare against.
    pub issued_ms: u64,
    /// When it expires, ms since the epoch.
    pub not_after_ms: u64,
    /// Not from a certificate: the embedded default's local operator (whoever can read its
    /// state directory), who holds every right there and is the only person it knows.
    pub local: bool,
}

impl CallerIdentity {
    /// An identity that is not from a certificate (the embedded default's local operator),
    /// valid from the epoch for ever.
    pub fn local(role: Role, name: String) -> CallerIdentity {
        CallerIdentity { role, name, issued_ms: 0, not_after_ms: u64::MAX, local: true }
    }
}

/// A CA certificate's subject name and public key.
fn subject_and_key(pem: &str) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let der = pem_to_der(pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::Invalid(format!("bad CA certificate: {e}")))?;
    Ok((cert.subject().as_raw().to_vec(), cert.public_key().raw.to_vec()))
}

impl RoleNames {
    /// From the cluster's CAs.
    pub fn new(pki: &ClusterPki) -> Result<RoleNames, PkiError> {
        let mut cas = Vec::new();
        for (role, pem) in [
            (Role::Peer, &pki.peer.cert_pem),
            (Role::Agent, &pki.agent.cert_pem),
            (Role::Operator, &pki.operator_cert_pem),
        ] {
            let (subject, key) = subject_and_key(pem)?;
            cas.push((role, subject, key));
        }
        Ok(RoleNames { cas })
    }

    /// Identifies the leaf of a chain that TLS already verified against the cluster's CAs. The
    /// leaf must be signed *directly* by the role's CA (checked with the CA's key, not only by
    /// name), so whoever holds one CA cannot pass as another role through an intermediate named
    /// like it. `None` when there is no certificate or no CA signed it.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<CallerIdentity> {
        let leaf = chain.first()?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
        let issuer = cert.issuer().as_raw();
        let role = self.cas.iter().find_map(|(role, subject, key)| {
            if subject.as_slice() != issuer {
                return None;
            }
            let (_, spki) = SubjectPublicKeyInfo::from_der(key).ok()?;
            cert.verify_signature(Some(&spki)).ok().map(|()| *role)
        })?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned();
        let ms = |t: x509_parser::time::ASN1Time| {
            u64::try_from(t.timestamp()).unwrap_or(0).saturating_mul(1000)
        };
        let validity = cert.validity();
        Some(CallerIdentity {
            role,
            name,
            issued_ms: ms(validity.not_before)
                .saturating_add(super::authority::BACKDATE.whole_milliseconds() as u64),
            not_after_ms: ms(validity.not_after),
            local: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::pki::Authority;

    fn chain(pems: &[&str]) -> Vec<CertificateDer<'static>> {
        pems.iter().map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).collect()
    }

    #[test]
    fn roles_come_from_the_signing_ca_not_only_its_name() {
        let (pki, _) = ClusterPki::generate("roles").unwrap();
        let roles = RoleNames::new(&pki).unwrap();
        let node = pki.issue_node(4, &["127.0.0.1".into()]).unwrap();
        let identity = roles.identify(&chain(&[&node.cert_pem])).unwrap();
        assert_eq!((identity.role, identity.name.as_str()), (Role::Peer, "node-4"));
        assert!(identity.issued_ms < identity.not_after_ms);
        let operator = pki.issue_operator("alice", 1).unwrap();
        assert_eq!(
            roles.identify(&chain(&[&operator.cert_pem])).map(|i| i.role),
            Some(Role::Operator)
        );

        // Whoever holds the agent CA forges an intermediate named like the operator CA.
        let forged = Authority::generate("dsops operator CA roles", Some(&pki.agent), 1).unwrap();
        let now = OffsetDateTime::now_utc();
        let mallory = ClusterPki::issue_with_validity(
            &forged,
            "mallory",
            now - Duration::hours(1),
            now + Duration::hours(1),
        )
        .unwrap();
        assert_eq!(roles.identify(&chain(&[&mallory.cert_pem, &forged.cert_pem])), None);

        let (other, _) = ClusterPki::generate("elsewhere").unwrap();
        let stranger = other.issue_node(1, &[]).unwrap();
        assert_eq!(roles.identify(&chain(&[&stranger.cert_pem])), None);
        assert_eq!(roles.identify(&[]), None);
    }
}
