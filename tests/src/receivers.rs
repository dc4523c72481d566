//! Real receivers for notification tests: an HTTP/1.1 server on a free loopback port that
//! records each request (for the Slack, webhook and PagerDuty request shapes), and the Standard
//! Webhooks signature check a receiver does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request as an HTTP receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// Its body.
    pub body: Vec<u8>,
}

/// An HTTP/1.1 receiver on a free loopback port answering every request with `status`.
pub async fn receiver(status: u16) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let (port, seen, _) = switchable(status).await;
    (port, seen)
}

/// [`receiver`] whose answer can be changed while it runs (a health endpoint that goes bad).
pub async fn switchable(status: u16) -> (u16, Arc<Mutex<Vec<Received>>>, Arc<AtomicU16>) {
    let answer = Arc::new(AtomicU16::new(status));
    let (port, seen) = serve(answer.clone()).await;
    (port, seen, answer)
}

async fn serve(answer: Arc<AtomicU16>) -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a receiver");
    let port = listener.local_addr().expect("receiver address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let log = log.clone();
            let status = answer.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let headers: BTreeMap<String, String> = text[..end]
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let length: usize =
                        headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if data.len() < end + 4 + length {
                        continue;
                    }
                    let body = data[end + 4..end + 4 + length].to_vec();
                    log.lock().expect("receiver log").push(Received { headers, body });
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    return;
                }
            });
        }
    });
    (port, seen)
}

impl Received {
    /// Whether it is signed the Standard Webhooks way with `secret` (the raw key bytes).
    pub fn signed_with(&self, secret: &[u8]) -> bool {
        let (Some(id), Some(ts), Some(signature)) = (
            self.headers.get("webhook-id"),
            self.headers.get("webhook-timestamp"),
            self.headers.get("webhook-signature"),
        ) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(&self.body);
        let expected = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, &signed).as_ref());
        *signature == format!("v1,{expected}")
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}
