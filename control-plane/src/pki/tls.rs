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
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::{Acceptor, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use dsops_identity::RAFT_SERVER_NAME;
use dsops_identity::tls::{certs, key, provider, roots};

use super::{CallerIdentity, ClusterPki, RoleNames};
use dsops_identity::{CertifiedKey, PkiError};

/// Told of each refused handshake: the client's address and why.
pub type RefusalHook = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// The two server configurations of a node, chosen per connection by SNI.
pub struct ServerTls {
    raft: Arc<ServerConfig>,
    api: Arc<ServerConfig>,
    roles: RoleNames,
    refused: Option<RefusalHook>,
    /// TLS handshakes completed on this listener.
    handshakes: Arc<AtomicU64>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds both configurations from the node's certificate and the cluster's CAs.
    pub fn new(node: &CertifiedKey, pki: &ClusterPki) -> Result<ServerTls, PkiError> {
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
            handshakes: Arc::default(),
        })
    }

    /// Calls `hook` for every refused handshake (a certificate from another CA, an expired one,
    /// none where one is required).
    pub fn on_refusal(mut self, hook: RefusalHook) -> ServerTls {
        self.refused = Some(hook);
        self
    }

    /// The same trust for HTTP/1.1 clients (the reports API): every server name gets the API
    /// configuration (client certificates optional, any of the cluster's CAs), offering
    /// `http/1.1` by ALPN.
    pub fn for_http1(&self) -> ServerTls {
        let mut api = (*self.api).clone();
        api.alpn_protocols = vec![b"http/1.1".to_vec()];
        let api = Arc::new(api);
        ServerTls {
            raft: api.clone(),
            api,
            roles: self.roles.clone(),
            refused: self.refused.clone(),
            handshakes: Arc::default(),
        }
    }

    /// How many TLS handshakes completed on the listeners this configuration served.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
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
                            tls.handshakes.fetch_add(1, Ordering::Relaxed);
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
