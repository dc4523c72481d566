//! A **simulator** of the ACME features Debian's pebble 2.4 lacks, in front of a real pebble:
//! renewal information (ARI, RFC 9773: `renewalInfo` in the directory and
//! `GET <renewalInfo>/<certificate id>` answering a suggested window with a `Retry-After`), and a
//! rate limit (`newOrder` answering `429 urn:ietf:params:acme:error:rateLimited` with a
//! `Retry-After`, as Let's Encrypt does). Everything else (accounts, nonces, orders, challenges,
//! certificates) is pebble's own: the front only serves the directory, naming pebble's URLs for
//! the rest. HTTPS with pebble's listener certificate. Stopped on drop.

use std::sync::{Arc, Mutex};

use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pebble::Pebble;
use crate::simulators::read_request;

/// What the front adds to pebble.
#[derive(Debug, Clone)]
pub enum Mode {
    /// ARI, suggesting this window (RFC 3339 times) for every certificate.
    Renewal {
        /// Window start.
        start: String,
        /// Window end.
        end: String,
    },
    /// Every new order is refused as rate limited, asking to wait this many seconds.
    RateLimited {
        /// The `Retry-After` seconds.
        retry_after: u64,
    },
}

/// A running front: the directory URL to give the agent, and what it was asked.
#[derive(Debug)]
pub struct AcmeFront {
    /// The directory URL (`https://127.0.0.1:<port>/dir`).
    pub directory: String,
    /// The certificate ids ARI was asked about, and the refused orders (`new-order`).
    pub asked: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AcmeFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tls_config(pebble: &Pebble) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pebble.listener_cert)
        .expect("listener cert")
        .collect::<Result<_, _>>()
        .expect("listener cert");
    let key = PrivateKeyDer::from_pem_file(&pebble.listener_key).expect("listener key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("TLS config");
    Arc::new(config)
}

/// Pebble's directory, fetched over HTTPS trusting its listener CA.
async fn pebble_directory(pebble: &Pebble) -> Json {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pebble.ca_bundle).expect("CA") {
        roots.add(cert.expect("CA")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let address = pebble.directory.trim_start_matches("https://").split('/').next().expect("host");
    let tcp = tokio::net::TcpStream::connect(address).await.expect("pebble");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to pebble");
    let request = format!("GET /dir HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    // Go closes without close_notify; what was read is the whole response.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).expect("a response");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("pebble's directory {body:?}: {e}"))
}

/// Starts the front for `pebble` in `mode`.
pub async fn start(pebble: &Pebble, mode: Mode) -> AcmeFront {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("https://{}", listener.local_addr().expect("address"));
    let mut directory = pebble_directory(pebble).await;
    match &mode {
        Mode::Renewal { .. } => directory["renewalInfo"] = json!(format!("{base}/renewal-info")),
        Mode::RateLimited { .. } => directory["newOrder"] = json!(format!("{base}/new-order")),
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(pebble));
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, directory, mode, seen) =
                (acceptor.clone(), directory.clone(), mode.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else { return };
                let Some(request) = read_request(&mut stream).await else { return };
                let (status, headers, body) = answer(&request, &directory, &mode, &seen);
                let response = format!(
                    "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    AcmeFront { directory: format!("{base}/dir"), asked, task }
}

fn answer(
    request: &crate::simulators::Request,
    directory: &Json,
    mode: &Mode,
    seen: &Mutex<Vec<String>>,
) -> (u16, String, String) {
    let json = "Content-Type: application/json\r\n".to_owned();
    match (request.method.as_str(), request.path.as_str(), mode) {
        ("GET", "/dir", _) => (200, json, directory.to_string()),
        ("GET", path, Mode::Renewal { start, end }) if path.starts_with("/renewal-info/") => {
            let id = path.trim_start_matches("/renewal-info/").to_owned();
            if let Ok(mut seen) = seen.lock() {
                seen.push(id);
            }
            let body = json!({ "suggestedWindow": { "start": start, "end": end } });
            (200, format!("{json}Retry-After: 21600\r\n"), body.to_string())
        }
        ("POST", "/new-order", Mode::RateLimited { retry_after }) => {
            if let Ok(mut seen) = seen.lock() {
                seen.push("new-order".to_owned());
            }
            let body = json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders recently (simulated rate limit)",
                "status": 429,
            });
            let headers =
                format!("Content-Type: application/problem+json\r\nRetry-After: {retry_after}\r\n");
            (429, headers, body.to_string())
        }
        _ => (404, json, json!({ "detail": "not simulated" }).to_string()),
    }
}
