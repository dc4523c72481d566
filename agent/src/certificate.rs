//! Certificates the agent issues itself, from an internal CA whose certificate and key stay in the
//! agent's own store (`internal-ca-certificate` services): the leaf's names, key type and
//! lifetime come from the configuration, and the result is stored as PEM fields `cert`, `key`
//! and `chain`. A certificate is checked by a real TLS handshake: in memory, a server holding the
//! new certificate and key, a client trusting only the chain's root and asking for each name;
//! and, when the configuration names an endpoint, a handshake with that endpoint.

use std::sync::Arc;
use std::time::Duration;

use dsops_proto::domain::StoreRef;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value as Json;

use crate::secret::SecretValue;
use crate::store::Fields;

/// The service types whose certificates the agent issues.
pub const CERTIFICATE_TYPES: &[&str] = &["internal-ca-certificate", "acme-certificate"];

/// The field that holds the leaf certificate (PEM).
pub const CERT_FIELD: &str = "cert";
/// The field that holds the leaf's private key (PKCS#8 PEM).
pub const KEY_FIELD: &str = "key";
/// The field that holds the issuing chain, up to the root (PEM).
pub const CHAIN_FIELD: &str = "chain";

/// Who issues a service's certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    /// The agent itself, from the CA whose `cert` and `key` (PEM) are in this store entry.
    InternalCa(StoreRef),
    /// An ACME CA.
    Acme(crate::acme::AcmeSpec),
}

impl Issuer {
    /// The store entry of the agent's own credential for this issuer (the CA, the account).
    pub fn credential(&self) -> &StoreRef {
        match self {
            Issuer::InternalCa(ca) => ca,
            Issuer::Acme(acme) => &acme.account,
        }
    }
}

/// An `internal-ca-certificate` or `acme-certificate` service as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// Who issues.
    pub issuer: Issuer,
    /// The lifetime of a certificate unless the variable says otherwise (internal CA).
    pub validity: Duration,
    /// The key type unless the variable says otherwise.
    pub key_type: String,
}

/// What one variable asks for (its `rotation.config`, over the service's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Subject alternative names: DNS names or IP addresses. The first is the common name.
    pub names: Vec<String>,
    /// Key type: `ecdsa-p256`, `ecdsa-p384` or `ed25519`.
    pub key_type: String,
    /// How long the certificate is valid.
    pub lifetime: Duration,
    /// `host:port` of a TLS endpoint to handshake with at verify.
    pub endpoint: Option<String>,
}

impl Request {
    /// The request of a variable: `names` (required for an internal CA; an ACME service's
    /// `domains` otherwise), `key_type`, `lifetime`, `endpoint`.
    pub fn from_config(
        spec: &CertificateSpec,
        config: &serde_json::Map<String, Json>,
    ) -> Result<Request, String> {
        let names: Vec<String> = match config.get("names") {
            Some(Json::Array(list)) => list
                .iter()
                .map(|n| n.as_str().filter(|n| !n.is_empty()).map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or("rotation.config.names must be a list of DNS names or IP addresses")?,
            Some(Json::String(name)) if !name.is_empty() => vec![name.clone()],
            None if let Issuer::Acme(acme) = &spec.issuer => acme.domains.clone(),
            _ => return Err(
                "rotation.config.names is required: the certificate's DNS names or IP addresses"
                    .to_owned(),
            ),
        };
        if names.is_empty() {
            return Err("rotation.config.names is empty".to_owned());
        }
        let lifetime = match config.get("lifetime").and_then(Json::as_str) {
            Some(text) => dsops_config::time::Duration::parse(text)
                .map(|d| Duration::from_secs(d.as_secs()))
                .map_err(|e| format!("rotation.config.lifetime: {e}"))?,
            None => spec.validity,
        };
        let key_type = config
            .get("key_type")
            .and_then(Json::as_str)
            .map_or_else(|| spec.key_type.clone(), str::to_owned);
        let endpoint = config.get("endpoint").and_then(Json::as_str).map(str::to_owned);
        Ok(Request { names, key_type, lifetime, endpoint })
    }
}

fn algorithm(key_type: &str) -> Result<&'static rcgen::SignatureAlgorithm, String> {
    match key_type {
        "ecdsa-p256" => Ok(&rcgen::PKCS_ECDSA_P256_SHA256),
        "ecdsa-p384" => Ok(&rcgen::PKCS_ECDSA_P384_SHA384),
        "ed25519" => Ok(&rcgen::PKCS_ED25519),
        "rsa-2048" | "rsa-3072" => Err(format!(
            "key type {key_type} is not supported in this version (the agent generates ECDSA and Ed25519 keys: ecdsa-p256, ecdsa-p384, ed25519)"
        )),
        other => Err(format!("unknown key type {other:?} (ecdsa-p256, ecdsa-p384, ed25519)")),
    }
}

/// Issues a leaf certificate for `request` from the CA in `ca` (fields `cert` and `key`, PEM):
/// the fields `cert`, `key` and `chain` to store. `now` is when it becomes valid (a minute
/// earlier, for clocks a little behind).
pub fn issue(ca: &Fields, request: &Request, now: time::OffsetDateTime) -> Result<Fields, String> {
    let field = |name: &str| {
        ca.get(name).ok_or_else(|| format!("the CA entry has no field {name:?} (PEM)"))
    };
    let ca_cert = field(CERT_FIELD)?;
    let ca_key = KeyPair::from_pem(field(KEY_FIELD)?.expose())
        .map_err(|e| format!("the CA entry's key is not a PEM private key: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert.expose(), ca_key)
        .map_err(|e| format!("the CA entry's cert is not a PEM CA certificate: {e}"))?;
    let key = KeyPair::generate_for(algorithm(&request.key_type)?)
        .map_err(|e| format!("generating a {} key: {e}", request.key_type))?;
    let mut params = CertificateParams::default();
    for name in &request.names {
        params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone().try_into().map_err(|e| format!("name {name:?}: {e}"))?,
            ),
        });
    }
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, request.names[0].clone());
    params.distinguished_name = subject;
    params.not_before = now - time::Duration::minutes(1);
    let lifetime = time::Duration::try_from(request.lifetime)
        .map_err(|_| "the lifetime is too long".to_owned())?;
    params.not_after = now + lifetime;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert =
        params.signed_by(&key, &issuer).map_err(|e| format!("signing the certificate: {e}"))?;
    let mut fields = Fields::new();
    fields.insert(CERT_FIELD.to_owned(), SecretValue::new(cert.pem()));
    fields.insert(KEY_FIELD.to_owned(), SecretValue::new(key.serialize_pem()));
    fields.insert(CHAIN_FIELD.to_owned(), ca_cert.clone());
    Ok(fields)
}

/// 16 random bytes with the top bit clear (a positive serial).
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .unwrap_or_default();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

/// The certificates of a PEM text, in order.
fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let list: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} is not PEM certificates: {e}"))?;
    if list.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(list)
}

/// What a check of a stored certificate found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// SHA-256 of the leaf (DER), hex.
    pub sha256: String,
    /// Its serial number, hex.
    pub serial: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
}

/// The leaf's identity and expiry.
pub fn describe(fields: &Fields) -> Result<Checked, String> {
    let cert = fields.get(CERT_FIELD).ok_or("the version has no field \"cert\"")?;
    let leaf = certificates(cert.expose(), "cert")?.remove(0);
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("cert does not parse: {e}"))?;
    let not_after = parsed.validity().not_after.to_datetime();
    Ok(Checked {
        sha256: dsops_proto::hex(
            ring::digest::digest(&ring::digest::SHA256, leaf.as_ref()).as_ref(),
        ),
        serial: parsed.raw_serial_as_string().replace(':', ""),
        not_after: not_after
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| not_after.to_string()),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts only the last certificate of `chain` (the root).
fn client(chain: &[CertificateDer<'static>]) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let root = chain.last().ok_or("the chain is empty")?;
    roots.add(root.clone()).map_err(|e| format!("the chain's root is not usable: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|e| format!("name {name:?}: {e}"))
}

/// Checks the certificate in `fields` by TLS handshakes in memory, one per name: the key
/// matches the certificate, the certificate chains to the chain's root, is valid now and
/// covers the name.
pub async fn check(fields: &Fields, names: &[String]) -> Result<Checked, String> {
    let get = |name: &str| fields.get(name).ok_or_else(|| format!("no field {name:?}"));
    let leaf = certificates(get(CERT_FIELD)?.expose(), "cert")?;
    let chain = certificates(get(CHAIN_FIELD)?.expose(), "chain")?;
    let key = {
        use rustls::pki_types::pem::PemObject as _;
        PrivateKeyDer::from_pem_slice(get(KEY_FIELD)?.expose().as_bytes())
            .map_err(|e| format!("key is not a PEM private key: {e}"))?
    };
    let mut presented = leaf.clone();
    presented.extend(chain.iter().cloned());
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(presented, key)
        .map_err(|e| format!("the key does not go with the certificate: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = client(&chain)?;
    for name in names {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let accept = acceptor.accept(far);
        let connect = connector.connect(server_name(name)?, near);
        let (accepted, connected) = tokio::join!(accept, connect);
        connected.map_err(|e| format!("a TLS client asking for {name} refused it: {e}"))?;
        accepted.map_err(|e| format!("the TLS handshake for {name} failed: {e}"))?;
    }
    describe(fields)
}

/// A TLS handshake with `endpoint` (`host:port`) as a client trusting only the chain's root
/// and asking for `name`: the SHA-256 of the certificate it presents.
pub async fn handshake(
    endpoint: &str,
    fields: &Fields,
    name: &str,
    timeout: Duration,
) -> Result<String, String> {
    let chain =
        certificates(fields.get(CHAIN_FIELD).ok_or("no field \"chain\"")?.expose(), "chain")?;
    let connector = client(&chain)?;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(endpoint)
            .await
            .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
        let tls = connector.connect(server_name(name)?, stream).await.map_err(|e| {
            format!("{endpoint} did not present a valid certificate for {name}: {e}")
        })?;
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|list| list.first())
            .ok_or_else(|| format!("{endpoint} presented no certificate"))?;
        Ok(dsops_proto::hex(
            ring::digest::digest(&ring::digest::SHA256, presented.as_ref()).as_ref(),
        ))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{endpoint}: no TLS handshake within {timeout:?}")))
}
