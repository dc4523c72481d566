//! TLS for every control-plane port, on rustls with the ring provider.
//!
//! One listening port serves all three gRPC services. The TLS server name a client asks for
//! (SNI) selects the rules, before any certificate is exchanged:
//!
//! * [`RAFT_SERVER_NAME`]: a client certificate from the **peer CA** is mandatory; anything else
//!   is refused during the handshake.
//! * anything else (the API): a client certificate is optional, but when one is presented it
//!   must verify against one of the cluster's CAs. Each service then checks the caller's role;
//!   only joining and enrolment calls accept a caller without a certificate (they carry a
//!   one-time token instead).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use super::{CallerIdentity, ClusterPki, NodeCertificate, PkiError, RoleNames};

/// The TLS server name peers use for raft: it selects mandatory peer-CA client certificates.
pub const RAFT_SERVER_NAME: &str = "raft.dsops.internal";
/// The TLS server name of the API (operators, agents, joining nodes).
pub const API_SERVER_NAME: &str = "api.dsops.internal";

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Invalid(format!("bad certificate PEM: {e}")))
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Invalid(format!("bad private key PEM: {e}")))
}

fn roots(pems: &[&str]) -> Result<Arc<RootCertStore>, PkiError> {
    let mut store = RootCertStore::empty();
    for pem in pems {
        for cert in certs(pem)? {
            store.add(cert).map_err(|e| PkiError::Invalid(format!("bad CA certificate: {e}")))?;
        }
    }
    Ok(Arc::new(store))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Told of each refused handshake: the client's address and why.
pub type RefusalHook = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// The two server configurations of a node, chosen per connection by SNI.
pub struct ServerTls {
    raft: Arc<ServerConfig>,
    api: Arc<ServerConfig>,
    roles: RoleNames,
    refused: Option<RefusalHook>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds both configurations from the node's certificate and the cluster's CAs.
    pub fn new(node: &NodeCertificate, pki: &ClusterPki) -> Result<ServerTls, PkiError> {
        let mut chain = certs(&node.cert_pem)?;
        chain.extend(certs(&pki.peer.cert_pem)?);
        let tls_error = |e: rustls::Error| PkiError::Invalid(format!("TLS configuration: {e}"));
        let verifier_error = |e: rustls::server::VerifierBuilderError| {
            PkiError::Invalid(format!("TLS verifier: {e}"))
        };

        let peer_only =
            WebPkiClientVerifier::builder_with_provider(roots(&[&pki.peer.cert_pem])?, provider())
                .build()
                .map_err(verifier_error)?;
        let mut raft = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(peer_only)
            .with_single_cert(chain.clone(), key(&node.key_pem)?)
            .map_err(tls_error)?;
        raft.alpn_protocols = vec![b"h2".to_vec()];

        let any_cluster_ca = WebPkiClientVerifier::builder_with_provider(
            roots(&[&pki.peer.cert_pem, &pki.agent.cert_pem, &pki.operator_cert_pem])?,
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(verifier_error)?;
        let mut api = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(any_cluster_ca)
            .with_single_cert(chain, key(&node.key_pem)?)
            .map_err(tls_error)?;
        api.alpn_protocols = vec![b"h2".to_vec()];
        Ok(ServerTls {
            raft: Arc::new(raft),
            api: Arc::new(api),
            roles: RoleNames::new(pki)?,
            refused: None,
        })
    }

    /// Calls `hook` for every refused handshake (a certificate from another CA, an expired one,
    /// none where one is required).
    pub fn on_refusal(mut self, hook: RefusalHook) -> ServerTls {
        self.refused = Some(hook);
        self
    }

    fn for_server_name(&self, name: Option<&str>) -> Arc<ServerConfig> {
        if name == Some(RAFT_SERVER_NAME) { self.raft.clone() } else { self.api.clone() }
    }
}

/// What the server knows about a connection: handed to every request through tonic's
/// connect info.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The verified client certificate chain (empty when none was presented).
    pub certs: Vec<CertificateDer<'static>>,
    /// The TLS server name the client asked for.
    pub server_name: Option<String>,
    /// Who the verified certificate says the client is (worked out once per connection).
    pub identity: Option<CallerIdentity>,
}

/// A server-side TLS connection, as tonic sees it.
#[derive(Debug)]
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    info: ConnInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The accepted, handshaken connections of a listener, for `Server::serve_with_incoming`.
pub type TlsIncoming = tokio_stream::wrappers::ReceiverStream<Result<TlsConn, io::Error>>;

impl ServerTls {
    /// Accepts connections on `listener`, each handshake in its own task (a slow or hostile
    /// client cannot hold up the others). Failed handshakes are dropped and logged.
    pub fn incoming(self: Arc<Self>, listener: TcpListener) -> TlsIncoming {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // Stop accepting (and close the port) as soon as the server is gone.
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = tx.closed() => break,
                };
                let (tcp, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let tls = self.clone();
                let conn_tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        tls.handshake(tcp, remote),
                    );
                    match handshake.await {
                        Ok(Ok(conn)) => {
                            let _ = conn_tx.send(Ok(conn)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake refused");
                            if let Some(hook) = &tls.refused {
                                hook(remote, error.to_string());
                            }
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }

    async fn handshake(&self, tcp: TcpStream, remote: SocketAddr) -> io::Result<TlsConn> {
        let start = tokio_rustls::LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
        let server_name = start.client_hello().server_name().map(str::to_owned);
        let config = self.for_server_name(server_name.as_deref());
        let stream = start.into_stream(config).await?;
        let certs: Vec<CertificateDer<'static>> = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let identity = self.roles.identify(&certs);
        Ok(TlsConn {
            stream,
            info: ConnInfo { remote: Some(remote), certs, server_name, identity },
        })
    }
}

/// A client configuration that trusts the cluster's peer CA and, when given, presents an
/// identity (node or operator certificate).
pub fn client_config(
    peer_ca_pem: &str,
    identity: Option<&NodeCertificate>,
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
            .find(|cert| super::fingerprint(cert.as_ref()) == self.fingerprint)
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
