//! Client TLS for dsops connections, on rustls with the ring provider: the server names that
//! select a node's rules, the client configuration that trusts the cluster's peer CA (and
//! presents an identity), and the pinned configuration a joining node or enrolling agent uses
//! before it knows the cluster.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::{CertifiedKey, PkiError};

/// The TLS server name peers use for raft: it selects mandatory peer-CA client certificates.
pub const RAFT_SERVER_NAME: &str = "raft.dsops.internal";
/// The TLS server name of the API (operators, agents, joining nodes).
pub const API_SERVER_NAME: &str = "api.dsops.internal";

/// Every certificate of a PEM text.
pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Invalid(format!("bad certificate PEM: {e}")))
}

/// The private key of a PEM text.
pub fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Invalid(format!("bad private key PEM: {e}")))
}

/// A root store holding every certificate of the given PEM texts.
pub fn roots(pems: &[&str]) -> Result<Arc<RootCertStore>, PkiError> {
    let mut store = RootCertStore::empty();
    for pem in pems {
        for cert in certs(pem)? {
            store.add(cert).map_err(|e| PkiError::Invalid(format!("bad CA certificate: {e}")))?;
        }
    }
    Ok(Arc::new(store))
}

/// The crypto provider dsops uses everywhere (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that trusts the cluster's peer CA and, when given, presents an
/// identity (node or operator certificate).
pub fn client_config(
    peer_ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> Result<Arc<ClientConfig>, PkiError> {
    let tls_error = |e: rustls::Error| PkiError::Invalid(format!("TLS configuration: {e}"));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(&[peer_ca_pem])?);
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(certs(&identity.cert_pem)?, key(&identity.key_pem)?)
            .map_err(tls_error)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration for a node that does not know the cluster yet (joining): it accepts
/// the server only if the server's chain contains the CA whose SHA-256 fingerprint the join
/// token carries, and the server certificate verifies against that CA.
pub fn pinned_client_config(ca_fingerprint: &str) -> Result<Arc<ClientConfig>, PkiError> {
    let verifier =
        PinnedVerifier { fingerprint: ca_fingerprint.to_ascii_lowercase(), provider: provider() };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PkiError::Invalid(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedVerifier {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .find(|cert| crate::fingerprint(cert.as_ref()) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General("the server's CA does not match the join token".into())
            })?;
        let mut store = RootCertStore::empty();
        store
            .add(pinned.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
