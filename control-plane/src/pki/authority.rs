//! Creating and loading the cluster's CAs, and issuing certificates.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use dsops_identity::{
    CertifiedKey, PkiError, distinguished_name as name, pem_to_der, write_private, write_public,
};

/// How far back certificates date their validity, for clocks a little behind: a certificate
/// was issued this long after its `not_before`.
pub const BACKDATE: Duration = Duration::minutes(5);

/// An issuing CA: its certificate, and its key where this node holds it (voters do; a learner
/// holds the certificate only).
pub struct Authority {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA key, PEM (empty when this node does not hold it).
    pub key_pem: String,
    issuer: Option<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Authority").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Authority {
    /// Rebuilds an authority from its PEM files' contents.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer: Some(issuer),
        })
    }

    /// An authority whose certificate this node knows and whose key it does not hold.
    pub fn certificate_only(cert_pem: &str) -> Authority {
        Authority { cert_pem: cert_pem.to_owned(), key_pem: String::new(), issuer: None }
    }

    /// Whether this node holds the key and can issue.
    pub fn can_issue(&self) -> bool {
        self.issuer.is_some()
    }

    pub(super) fn issuer(&self) -> Result<&Issuer<'static, KeyPair>, PkiError> {
        self.issuer.as_ref().ok_or_else(|| {
            PkiError::Invalid(
                "this node does not hold the issuing CA key (only voters do; it may have just been promoted): ask the leader".into(),
            )
        })
    }

    /// A new CA, self-signed or signed by `parent`.
    pub(crate) fn generate(
        common_name: &str,
        parent: Option<&Authority>,
        years: i64,
    ) -> Result<Authority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca =
            IsCa::Ca(BasicConstraints::Constrained(if parent.is_some() { 0 } else { 1 }));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - BACKDATE;
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365 * years);
        let cert = match parent {
            Some(parent) => params.signed_by(&key, parent.issuer()?)?,
            None => params.self_signed(&key)?,
        };
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(Authority { cert_pem, key_pem, issuer: Some(issuer) })
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> Result<Vec<u8>, PkiError> {
        pem_to_der(&self.cert_pem)
    }
}

/// The CAs of one cluster.
#[derive(Debug)]
pub struct ClusterPki {
    /// A random id naming the cluster in certificate subjects.
    pub cluster_id: String,
    /// The root CA certificate, PEM (its key is kept only by the node that ran `init`).
    pub root_cert_pem: String,
    /// Issues node certificates.
    pub peer: Authority,
    /// Issues agent certificates.
    pub agent: Authority,
    /// The operator CA certificate, PEM (every node trusts it).
    pub operator_cert_pem: String,
    /// The operator CA with its key: on the node that ran `init` and on every voter that asked
    /// for the issuing keys (a learner, and a join token, never get it). A voter holds the
    /// peer CA key already, which is the greater power.
    pub operator: Option<Authority>,
}

/// Whether `key_pem` is the private key of the certificate `cert_pem`.
fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool, PkiError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let key = KeyPair::from_pem(key_pem)?;
    let der = pem_to_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| PkiError::Invalid(format!("bad CA certificate: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// How long node certificates last. There is no automatic renewal yet (see docs/operations.md).
pub const NODE_CERT_DAYS: i64 = 3 * 365;

/// The names a node certificate always carries, whatever address it is reached at: clients
/// connect with these as the TLS server name (which also selects the listener's trust rules).
pub const NODE_NAMES: [&str; 2] =
    [dsops_identity::RAFT_SERVER_NAME, dsops_identity::API_SERVER_NAME];

impl ClusterPki {
    /// Creates a new cluster's CAs. Returns the root key PEM separately: only `init` keeps it.
    pub fn generate(cluster_id: &str) -> Result<(ClusterPki, String), PkiError> {
        let root = Authority::generate(&format!("dsops root CA {cluster_id}"), None, 10)?;
        let peer = Authority::generate(&format!("dsops peer CA {cluster_id}"), Some(&root), 10)?;
        let agent = Authority::generate(&format!("dsops agent CA {cluster_id}"), Some(&root), 10)?;
        let operator =
            Authority::generate(&format!("dsops operator CA {cluster_id}"), Some(&root), 10)?;
        let root_key = root.key_pem.clone();
        Ok((
            ClusterPki {
                cluster_id: cluster_id.to_owned(),
                root_cert_pem: root.cert_pem,
                peer,
                agent,
                operator_cert_pem: operator.cert_pem.clone(),
                operator: Some(operator),
            },
            root_key,
        ))
    }

    /// Loads the CAs from a node's `tls/` directory.
    pub fn load(dir: &Path) -> Result<ClusterPki, PkiError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path)
                .map_err(|source| PkiError::Io { path: path.display().to_string(), source })
        };
        let cluster_id = read("cluster-id")?.trim().to_owned();
        // A learner holds the issuing CAs' certificates only.
        let authority = |base: &str| {
            let cert = read(&format!("{base}.pem"))?;
            match dir.join(format!("{base}.key")).exists() {
                true => Authority::from_pem(&cert, &read(&format!("{base}.key"))?),
                false => Ok(Authority::certificate_only(&cert)),
            }
        };
        let operator_cert_pem = read("operator-ca.pem")?;
        let operator = match dir.join("operator-ca.key").exists() {
            true => Some(Authority::from_pem(&operator_cert_pem, &read("operator-ca.key")?)?),
            false => None,
        };
        Ok(ClusterPki {
            cluster_id,
            root_cert_pem: read("root-ca.pem")?,
            peer: authority("peer-ca")?,
            agent: authority("agent-ca")?,
            operator_cert_pem,
            operator,
        })
    }

    /// These CAs with the issuing keys a voter received, after checking that they belong to the
    /// certificates this node already trusts. An empty operator key keeps what this node has
    /// (a leader of an older release sends none).
    pub fn with_issuing_keys(
        &self,
        peer_key_pem: &str,
        agent_key_pem: &str,
        operator_key_pem: &str,
    ) -> Result<ClusterPki, PkiError> {
        let operator = match (&self.operator, operator_key_pem.is_empty()) {
            (_, false) => {
                if !key_matches(&self.operator_cert_pem, operator_key_pem)? {
                    return Err(PkiError::Invalid(
                        "the operator CA key does not belong to the operator CA certificate this node trusts".into(),
                    ));
                }
                Some(Authority::from_pem(&self.operator_cert_pem, operator_key_pem)?)
            }
            (Some(operator), true) => {
                Some(Authority::from_pem(&operator.cert_pem, &operator.key_pem)?)
            }
            (None, true) => None,
        };
        Ok(ClusterPki {
            cluster_id: self.cluster_id.clone(),
            root_cert_pem: self.root_cert_pem.clone(),
            peer: Authority::from_pem(&self.peer.cert_pem, peer_key_pem)?,
            agent: Authority::from_pem(&self.agent.cert_pem, agent_key_pem)?,
            operator_cert_pem: self.operator_cert_pem.clone(),
            operator,
        })
    }

    /// Saves the CAs into a node's `tls/` directory (keys mode 0600).
    pub fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| PkiError::Io { path, source }
        };
        write_public(&dir.join("cluster-id"), &self.cluster_id)
            .map_err(io(&dir.join("cluster-id")))?;
        write_public(&dir.join("root-ca.pem"), &self.root_cert_pem)
            .map_err(io(&dir.join("root-ca.pem")))?;
        let operator_cert = dir.join("operator-ca.pem");
        write_public(&operator_cert, &self.operator_cert_pem).map_err(io(&operator_cert))?;
        let mut keyed = vec![("peer-ca", &self.peer), ("agent-ca", &self.agent)];
        if let Some(operator) = &self.operator {
            keyed.push(("operator-ca", operator));
        }
        for (base, authority) in keyed {
            let cert = dir.join(format!("{base}.pem"));
            let key = dir.join(format!("{base}.key"));
            write_public(&cert, &authority.cert_pem).map_err(io(&cert))?;
            if authority.can_issue() {
                write_private(&key, &authority.key_pem).map_err(io(&key))?;
            }
        }
        Ok(())
    }

    fn leaf_params(
        common_name: &str,
        hosts: &[String],
        days: i64,
        server: bool,
    ) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        let mut sans = Vec::new();
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.as_str().try_into().map_err(|_| {
                    PkiError::Invalid(format!("{host:?} is not a valid host name"))
                })?),
            };
            sans.push(san);
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.not_before = OffsetDateTime::now_utc() - BACKDATE;
        params.not_after = OffsetDateTime::now_utc() + Duration::days(days);
        Ok(params)
    }

    /// Issues a node certificate (server and client) for `node-<id>`, valid for its hosts and
    /// the fixed cluster names.
    pub fn issue_node(&self, node_id: u64, hosts: &[String]) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        let mut all: Vec<String> = NODE_NAMES.iter().map(|s| s.to_string()).collect();
        all.extend(hosts.iter().cloned());
        let params = Self::leaf_params(&format!("node-{node_id}"), &all, NODE_CERT_DAYS, true)?;
        let cert = params.signed_by(&key, self.peer.issuer()?)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Signs a joining node's CSR. The subject, names, usages and lifetime are set here: the
    /// CSR contributes only its public key.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        node_id: u64,
        hosts: &[String],
    ) -> Result<String, PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Invalid(format!("invalid certificate signing request: {e}")))?;
        let mut all: Vec<String> = NODE_NAMES.iter().map(|s| s.to_string()).collect();
        all.extend(hosts.iter().cloned());
        csr.params = Self::leaf_params(&format!("node-{node_id}"), &all, NODE_CERT_DAYS, true)?;
        Ok(csr.signed_by(self.peer.issuer()?)?.pem())
    }

    /// Signs an enrolling (or renewing) agent's CSR: subject `agent_id`, client use only, valid
    /// for `validity`. The CSR contributes only its public key. Returns the certificate and its
    /// expiry.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        agent_id: &str,
        validity: std::time::Duration,
    ) -> Result<(String, OffsetDateTime), PkiError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Invalid(format!("invalid certificate signing request: {e}")))?;
        let mut params = Self::leaf_params(agent_id, &[], 1, false)?;
        let validity = Duration::try_from(validity)
            .map_err(|_| PkiError::Invalid("certificate validity out of range".into()))?;
        params.not_after = OffsetDateTime::now_utc() + validity;
        let not_after = params.not_after;
        csr.params = params;
        Ok((csr.signed_by(self.agent.issuer()?)?.pem(), not_after))
    }

    /// Signs an enrolling (or renewing) operator's CSR: subject `name`, client use only, valid
    /// until `not_after_ms` (ms since the epoch). The CSR contributes only its public key.
    pub fn sign_operator_csr(
        &self,
        csr_pem: &str,
        name: &str,
        not_after_ms: u64,
    ) -> Result<String, PkiError> {
        let operator = self.operator.as_ref().ok_or_else(|| {
            PkiError::Invalid("this node does not hold the operator CA key yet".into())
        })?;
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Invalid(format!("invalid certificate signing request: {e}")))?;
        let mut params = Self::leaf_params(name, &[], 1, false)?;
        params.not_after =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(not_after_ms) * 1_000_000)
                .map_err(|_| PkiError::Invalid("certificate expiry out of range".into()))?;
        csr.params = params;
        Ok(csr.signed_by(operator.issuer()?)?.pem())
    }

    /// Issues an operator (CLI) certificate for `name`, valid for `days`.
    pub fn issue_operator(&self, name: &str, days: i64) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        let params = Self::leaf_params(name, &[], days, false)?;
        let operator = self.operator.as_ref().ok_or_else(|| {
            PkiError::Invalid("this node does not hold the operator CA key; issue operator certificates on the node that ran `init`".into())
        })?;
        let cert = params.signed_by(&key, operator.issuer()?)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Issues a certificate with an explicit validity window from one of the authorities (tests
    /// use it for expired certificates).
    pub fn issue_with_validity(
        authority: &Authority,
        common_name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<CertifiedKey, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = Self::leaf_params(common_name, &NODE_NAMES.map(str::to_owned), 1, true)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, authority.issuer()?)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
