//! The `webhook` transport: one HTTPS `POST` per step to the endpoint named in the agent's
//! configuration, with the request as the JSON body and the answer as the JSON response.
//!
//! - The body holds secret values, so the URL must be `https://`; plain `http://` is accepted
//!   only to a loopback address (a hook on the agent's own host).
//! - No proxy, no redirect: a value goes to the configured address or nowhere. A `3xx` answer
//!   is "not applied".
//! - With `auth_store`, every request carries `dsops-signature: t=<unix seconds>,v1=<hex
//!   HMAC-SHA256(secret, "<t>.<body>")>` so the endpoint can tell the agent from anyone else.
//! - `dsops-run`, `dsops-generation` and `dsops-step` headers let the endpoint deduplicate.
//!
//! Status codes: `2xx` carries the answer; 401 and 403 mean the endpoint does not accept the
//! agent (refused: no retry); other `4xx` (but 408 and 429) mean it refused the request (not
//! applied); 408, 429, `5xx`, a broken connection or the timeout after the request
//! was sent mean the hook may have acted (indeterminate for steps that change things). Failing
//! to connect or to complete the TLS handshake means nothing was sent (retryable).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Buf;
use dsops_proto::domain::{StepOutcome, StoreRef};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use zeroize::Zeroizing;

use super::HookCall;
use crate::secret::SecretValue;

/// The largest answer read from an endpoint.
const MAX_ANSWER: usize = 64 * 1024;

/// A webhook service, as the agent's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    url: String,
    tls: bool,
    host: String,
    port: u16,
    path: String,
    /// How long one call may take, connection included.
    pub timeout: Duration,
    /// Where the request-signing secret is (a store field), if requests are signed.
    pub auth: Option<StoreRef>,
    /// A PEM file of the CAs that may issue the endpoint's certificate, instead of the public
    /// web roots.
    pub ca_file: Option<PathBuf>,
}

impl WebhookSpec {
    /// A webhook at `url`; the error says why the URL cannot be used.
    pub fn new(
        url: &str,
        timeout: Duration,
        auth: Option<StoreRef>,
        ca_file: Option<PathBuf>,
    ) -> Result<WebhookSpec, String> {
        WebhookSpec::parse(url, timeout, auth, ca_file, false)
    }

    /// An endpoint a health check `GET`s: it carries no value, so `http://` is allowed to any
    /// host.
    pub fn probe(url: &str, timeout: Duration) -> Result<WebhookSpec, String> {
        WebhookSpec::parse(url, timeout, None, None, true)
    }

    fn parse(
        url: &str,
        timeout: Duration,
        auth: Option<StoreRef>,
        ca_file: Option<PathBuf>,
        plain_anywhere: bool,
    ) -> Result<WebhookSpec, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} is not an http:// or https:// URL")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{url:?} names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("webhook URL {url:?} carries credentials; use auth_store"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if !tls && !plain_anywhere && !is_loopback(&host) {
            return Err(format!(
                "webhook URL {url:?} must be https://: requests carry secret values (http:// is accepted only to a loopback address)"
            ));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(WebhookSpec { url: url.to_owned(), tls, host, port, path, timeout, auth, ca_file })
    }

    /// The URL as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint without path or query, for messages.
    fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(file) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
                    .and_then(|certs| certs.collect())
                    .map_err(|e| format!("webhook ca_file {}: {e}", file.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("webhook ca_file {} holds no certificate", file.display()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A request body in memory that is wiped when hyper drops it.
struct SecretBody(Zeroizing<Vec<u8>>, usize);

impl Buf for SecretBody {
    fn remaining(&self) -> usize {
        self.0.len() - self.1
    }

    fn chunk(&self) -> &[u8] {
        &self.0[self.1..]
    }

    fn advance(&mut self, count: usize) {
        self.1 = (self.1 + count).min(self.0.len());
    }
}

/// `dsops-signature` for `body` sent at `time` (unix seconds).
pub fn signature(secret: &[u8], time: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(time.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!("t={time},v1={}", dsops_proto::hex(tag.as_ref()))
}

/// Calls the endpoint for `call`: its outcome and a detail safe to report.
pub async fn post(
    spec: &WebhookSpec,
    call: &HookCall<'_>,
    auth: Option<&SecretValue>,
) -> (StepOutcome, String) {
    let who = format!("webhook {}", spec.origin());
    let deadline = Instant::now() + spec.timeout;
    let connection = match tokio::time::timeout(spec.timeout, connect(spec)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => return (StepOutcome::Retryable, format!("{who}: {error}")),
        Err(_) => {
            return (
                StepOutcome::Retryable,
                format!("{who}: no connection within {:?}", spec.timeout),
            );
        }
    };
    let body = call.request();
    let time = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(spec.path.as_str())
        .header(hyper::header::HOST, host_header(spec))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("dsops-agent/", env!("CARGO_PKG_VERSION")))
        .header("dsops-run", call.run_id)
        .header("dsops-generation", call.generation)
        .header("dsops-step", call.step);
    if let Some(secret) = auth {
        request = request.header(
            "dsops-signature",
            signature(secret.expose().as_bytes(), time, body.as_bytes()),
        );
    }
    let body = SecretBody(Zeroizing::new(body.as_bytes().to_vec()), 0);
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(error) => {
            return (StepOutcome::Refused, format!("{who}: cannot build the request: {error}"));
        }
    };
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(connection).await?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await;
        let answer = match response {
            Ok(response) => {
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map(|b| Zeroizing::new(b.to_bytes().to_vec()));
                Ok((status, bytes))
            }
            Err(error) => Err(error),
        };
        driver.abort();
        answer
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let (status, body) = match tokio::time::timeout(remaining, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return (call.unknown(), format!("{who}: {error}")),
        Err(_) => {
            return (call.unknown(), format!("{who} did not answer within {:?}", spec.timeout));
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(_) => {
            return (call.unknown(), format!("{who}: answered {status} with an unreadable body"));
        }
    };
    if status.is_success() {
        return call.answer(&who, &body);
    }
    let unknown = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if unknown {
        return (call.unknown(), format!("{who} answered {status}"));
    }
    if status.is_redirection() {
        return (
            StepOutcome::NotApplied,
            format!(
                "{who} answered {status}; redirects are not followed (a value would go elsewhere)"
            ),
        );
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        // The endpoint does not accept this agent: trying again cannot help.
        return (
            StepOutcome::Refused,
            format!("{who} refused the agent: {status} (check the service's auth_store)"),
        );
    }
    (StepOutcome::NotApplied, format!("{who} refused the request: {status}"))
}

/// Why a [`send`] failed: whether any of the request may have reached the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Bytes of the request may have left (after the connection was made).
    pub maybe_sent: bool,
    /// What happened, safe to report.
    pub message: String,
}

/// Sends one `POST` of `body` (JSON) with `headers` to `spec`'s URL, with the same rules as a
/// step's call (no proxy, no redirect, the spec's CAs and timeout): the status and the first
/// 64 KiB of the answer.
pub async fn send(
    spec: &WebhookSpec,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(StatusCode, Vec<u8>), SendError> {
    exchange(spec, Method::POST, headers, body).await
}

/// One `GET` of `spec`'s URL (a health check), with the rules of [`send`].
pub async fn get(spec: &WebhookSpec) -> Result<(StatusCode, Vec<u8>), SendError> {
    exchange(spec, Method::GET, &[], Vec::new()).await
}

async fn exchange(
    spec: &WebhookSpec,
    method: Method,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(StatusCode, Vec<u8>), SendError> {
    let who = spec.origin();
    let deadline = Instant::now() + spec.timeout;
    let connection = match tokio::time::timeout(spec.timeout, connect(spec)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            return Err(SendError { maybe_sent: false, message: format!("{who}: {error}") });
        }
        Err(_) => {
            return Err(SendError {
                maybe_sent: false,
                message: format!("{who}: no connection within {:?}", spec.timeout),
            });
        }
    };
    let post = method == Method::POST;
    let mut request = Request::builder()
        .method(method)
        .uri(spec.path.as_str())
        .header(hyper::header::HOST, host_header(spec))
        .header(hyper::header::USER_AGENT, concat!("dsops-agent/", env!("CARGO_PKG_VERSION")));
    if post {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let body = SecretBody(Zeroizing::new(body), 0);
    let request = request.body(Full::new(body)).map_err(|error| SendError {
        maybe_sent: false,
        message: format!("{who}: cannot build the request: {error}"),
    })?;
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(connection).await?;
        let driver = tokio::spawn(connection);
        let answer = match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let bytes = Limited::new(response.into_body(), MAX_ANSWER)
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                Ok((status, bytes))
            }
            Err(error) => Err(error),
        };
        driver.abort();
        answer
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(SendError { maybe_sent: true, message: format!("{who}: {error}") }),
        Err(_) => Err(SendError {
            maybe_sent: true,
            message: format!("{who} did not answer within {:?}", spec.timeout),
        }),
    }
}

fn host_header(spec: &WebhookSpec) -> String {
    let default = if spec.tls { 443 } else { 80 };
    let host = if spec.host.contains(':') { format!("[{}]", spec.host) } else { spec.host.clone() };
    if spec.port == default { host } else { format!("{host}:{}", spec.port) }
}

/// A stream that carries HTTP to the endpoint.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// Connects and, for https, completes the handshake; nothing of the request is sent yet.
async fn connect(spec: &WebhookSpec) -> Result<TokioIo<Box<dyn Stream>>, String> {
    let tcp = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    if !spec.tls {
        return Ok(TokioIo::new(Box::new(tcp)));
    }
    let config = spec.tls_config()?;
    let name = ServerName::try_from(spec.host.clone())
        .map_err(|e| format!("{:?} is not a TLS server name: {e}", spec.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    Ok(TokioIo::new(Box::new(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> Result<WebhookSpec, String> {
        WebhookSpec::new(url, Duration::from_secs(1), None, None)
    }

    #[test]
    fn urls_are_checked() {
        let s = spec("https://rotator.internal:8443/hooks/db?x=1").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("rotator.internal", 8443, "/hooks/db?x=1")
        );
        assert_eq!(spec("https://rotator.internal").unwrap().port, 443);
        assert_eq!(spec("http://127.0.0.1:9000/h").unwrap().port, 9000);
        assert_eq!(spec("http://[::1]:9000/h").unwrap().host, "::1");
        assert!(spec("http://localhost/h").is_ok());
        assert!(spec("http://rotator.internal/h").unwrap_err().contains("must be https://"));
        assert!(spec("http://10.0.0.1/h").unwrap_err().contains("must be https://"));
        assert!(spec("ftp://x/").unwrap_err().contains("not an http"));
        assert!(spec("https://user:pw@x/").unwrap_err().contains("carries credentials"));
        assert!(spec("not a url").is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // RFC 4231 style check of the construction: HMAC over "<t>.<body>".
        let sig = signature(b"key", 1_700_000_000, b"{}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
        let expected = ring::hmac::sign(&key, b"1700000000.{}");
        assert_eq!(sig, format!("t=1700000000,v1={}", dsops_proto::hex(expected.as_ref())));
        assert_ne!(signature(b"other", 1_700_000_000, b"{}"), sig);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let s = spec(&format!("http://127.0.0.1:{port}/")).unwrap();
        let value = SecretValue::new("v".to_owned());
        let call = super::super::test_call(&value, true);
        let (outcome, detail) = post(&s, &call, None).await;
        assert_eq!(outcome, StepOutcome::Retryable, "{detail}");
        assert!(detail.contains("cannot connect"), "{detail}");
    }
}
