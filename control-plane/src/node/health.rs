//! `dsops-server health`: a container or service-manager health check that needs no shell and
//! no HTTP client. It completes a mutual-TLS handshake with the node of a data directory on its
//! own port, as a peer would (the node's certificate, the cluster's peer CA), so it passes only
//! when that process is up, serving, and holding this cluster's certificate.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::DataDir;
use crate::pki::ClusterPki;

/// The port to reach a node on from its own host: `listen`'s port on loopback (a node that
/// listens on one address only is reached there).
fn local_address(listen: &str) -> Result<String, String> {
    let (host, port) =
        listen.rsplit_once(':').ok_or_else(|| format!("listen address {listen:?} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        other => other,
    };
    if host.contains(':') { Ok(format!("[{host}]:{port}")) } else { Ok(format!("{host}:{port}")) }
}

/// Checks the node of `dir` within `timeout`; on success says which node answered where.
pub async fn check(dir: &DataDir, timeout: Duration) -> Result<String, String> {
    let node = dir.read_node()?;
    let pki = ClusterPki::load(&dir.tls()).map_err(|e| format!("{}: {e}", dir.tls().display()))?;
    let cert = dir.read_node_cert()?;
    let tls = dsops_identity::tls::client_config(&pki.peer.cert_pem, Some(&cert))
        .map_err(|e| e.to_string())?;
    let address = local_address(&node.listen)?;
    let name = ServerName::try_from(dsops_identity::RAFT_SERVER_NAME)
        .map_err(|e| format!("server name: {e}"))?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| format!("node {} at {address}: {e}", node.node_id))?;
        tokio_rustls::TlsConnector::from(Arc::clone(&tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("node {} at {address}: TLS handshake: {e}", node.node_id))
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        format!("node {} at {address}: no answer within {timeout:?}", node.node_id)
    })??;
    Ok(format!("node {} serving on {address}", node.node_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_address_of_a_listen_address() {
        assert_eq!(local_address("0.0.0.0:7400").unwrap(), "127.0.0.1:7400");
        assert_eq!(local_address("10.0.0.5:7400").unwrap(), "10.0.0.5:7400");
        assert_eq!(local_address("[::]:7400").unwrap(), "[::1]:7400");
        assert!(local_address("nowhere").is_err());
    }
}
