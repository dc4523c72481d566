//! Client connections to control-plane nodes: gRPC channels over our own rustls configuration
//! (so the TLS server name, the trusted CA and the presented identity are all ours to choose,
//! including the pinned-CA configuration a joining node uses).

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not `host:port`.
    #[error("invalid address {0:?}: expected host:port")]
    Address(String),
    /// The TLS server name is not valid.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// A lazily connecting channel to `address` (`host:port`), speaking TLS with `config` and
/// asking for `server_name`.
pub fn channel(
    address: &str,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> Result<Channel, ChannelError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| ChannelError::Address(address.to_owned()))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| ChannelError::ServerName(server_name.to_owned()))?;
    let connector = tower::service_fn(move |uri: Uri| {
        let config = config.clone();
        let name = name.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "address has no port")
            })?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}
