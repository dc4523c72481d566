//! The `webhook` strategy: an HTTPS endpoint (named in the agent's own configuration) applies,
//! verifies and retires under the same protocol and JSON contract as `script`. The endpoint here
//! is user code of the kind the contract is for: it keeps a set of valid tokens, like an API that
//! holds two keys during a grace period, and authenticates the agent by the request signature.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dsops_agent::hook::webhook::signature;
use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const FIRST: &str = "first-token-000000000000000000000";
const SIGNING_SECRET: &str = "hook-signing-secret-0123456789";

/// The user's endpoint.
#[derive(Default)]
struct Endpoint {
    valid: Mutex<BTreeSet<String>>,
    /// Requests whose signature verified, and requests refused for a bad or missing one.
    signed: AtomicUsize,
    refused: AtomicUsize,
    /// Whether requests must be signed.
    require_signature: bool,
    /// Apply the first `apply`, then answer 503 as if the answer had been lost.
    lose_first_apply: AtomicBool,
    /// Every step seen, in order, with its `dsops-step` header.
    steps: Mutex<Vec<(String, String)>>,
}

impl Endpoint {
    fn new(require_signature: bool) -> Arc<Endpoint> {
        let endpoint = Endpoint { require_signature, ..Endpoint::default() };
        endpoint.valid.lock().unwrap().insert(FIRST.to_owned());
        Arc::new(endpoint)
    }

    fn valid(&self) -> Vec<String> {
        self.valid.lock().unwrap().iter().cloned().collect()
    }

    /// Answers one request: (status, JSON body).
    fn answer(&self, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
        let header = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        };
        if self.require_signature {
            let verified = header("dsops-signature").is_some_and(|given| {
                let time = given
                    .split(',')
                    .find_map(|p| p.strip_prefix("t="))
                    .and_then(|t| t.parse::<u64>().ok());
                time.is_some_and(|t| signature(SIGNING_SECRET.as_bytes(), t, body) == given)
            });
            if !verified {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return (401, json!({"error": "bad signature"}));
            }
            self.signed.fetch_add(1, Ordering::SeqCst);
        }
        let request: Value = serde_json::from_slice(body).unwrap();
        let step = request["step"].as_str().unwrap().to_owned();
        self.steps.lock().unwrap().push((step.clone(), header("dsops-step").unwrap_or("").into()));
        let value = request["value"].as_str().unwrap_or_default().to_owned();
        let other = request["current"].as_str().unwrap_or_default().to_owned();
        let mut valid = self.valid.lock().unwrap();
        let (outcome, detail) = match step.as_str() {
            "apply" => {
                valid.insert(value);
                if self.lose_first_apply.swap(false, Ordering::SeqCst) {
                    return (503, json!({"error": "answer lost"}));
                }
                ("succeeded", "token added")
            }
            "verify" if valid.contains(&value) => ("succeeded", "token accepted"),
            "verify" => ("not_applied", "token refused"),
            "retire" => {
                valid.remove(&other);
                ("succeeded", "old token revoked")
            }
            "rollback" => {
                valid.insert(value);
                valid.remove(&other);
                ("succeeded", "new token removed")
            }
            "check" => {
                let present = match request["checked_step"].as_str() {
                    Some("retire") => !valid.contains(&other),
                    _ => valid.contains(&value),
                };
                (if present { "succeeded" } else { "not_applied" }, "checked")
            }
            _ => ("not_applied", "unknown step"),
        };
        (200, json!({"outcome": outcome, "detail": detail}))
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body) and writes the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, endpoint: &Endpoint) {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the agent closed the connection before the request ended");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    assert!(request_line.starts_with("POST /rotate "), "{request_line}");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    let (status, answer) = endpoint.answer(&headers, &body);
    let answer = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.ok();
}

/// Serves `endpoint` on a free loopback port: over TLS with a fresh CA when `tls`. Returns the
/// port and, for TLS, the CA's PEM.
async fn serve(endpoint: Arc<Endpoint>, tls: bool) -> (u16, Option<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (acceptor, ca_pem) = if tls {
        let tls = dsops_tests::tls::ca_and_server(&["localhost"]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![tls.cert_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::try_from(tls.key_der.clone()).unwrap(),
            )
            .unwrap();
        (Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))), Some(tls.ca_pem.clone()))
    } else {
        (None, None)
    };
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let endpoint = endpoint.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            exchange(stream, &endpoint).await;
                        }
                    }
                    None => exchange(tcp, &endpoint).await,
                }
            });
        }
    });
    (port, ca_pem)
}

/// A project whose `API_TOKEN` rotates through the endpoint at `url`.
fn project(url: &str, extra: &str) -> Project {
    let yaml = format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  tokens:\n    type: webhook\n    url: {url}\n    timeout: 10s\n{extra}rotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    API_TOKEN:\n      from: {{ store: \"store://local/app/token#value\", service: \"svc://tokens?kind=secret\" }}\n      rotation: {{ strategy: webhook }}\n"
    );
    let project = Project::new(&yaml);
    project.put("app/token", "value", FIRST);
    project
}

/// An endpoint over HTTPS (its CA in the project's `ca_file`) that requires signed requests,
/// and a project whose webhook service signs with `store://local/hooks/tokens#secret`.
async fn signed_https_project() -> (Arc<Endpoint>, Project) {
    let endpoint = Endpoint::new(true);
    let (port, ca_pem) = serve(endpoint.clone(), true).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("hook-ca.pem");
    std::fs::write(&ca_file, ca_pem.unwrap()).unwrap();
    let project = project(
        &format!("https://localhost:{port}/rotate"),
        &format!(
            "    auth_store: store://local/hooks/tokens#secret\n    ca_file: {}\n",
            ca_file.display()
        ),
    );
    std::mem::forget(ca_dir); // Read by the agent while the project lives.
    (endpoint, project)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_https_applies_verifies_and_retires_with_signed_requests() {
    let (endpoint, project) = signed_https_project().await;
    project.put("hooks/tokens", "secret", SIGNING_SECRET);
    let embedded = project.open().await;

    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let steps: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "apply", "verify", "promote", "retire"]);
    let current = project.read("app/token", "value", Label::Current).unwrap();
    assert_ne!(current, FIRST);
    assert_eq!(endpoint.valid(), vec![current.clone()], "the new token is the only valid one");
    assert_eq!(endpoint.refused.load(Ordering::SeqCst), 0);
    assert_eq!(endpoint.signed.load(Ordering::SeqCst), 3, "apply, verify and retire, all signed");
    let seen = endpoint.steps.lock().unwrap().clone();
    assert!(seen.iter().all(|(body, header)| body == header), "{seen:?}");
    assert!(run.steps.iter().any(|s| s.detail == "old token revoked"), "{run:?}");
    assert!(run.steps.iter().all(|s| !s.detail.contains(&current) && !s.detail.contains(FIRST)));
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signing_secret_changes_nothing() {
    let (endpoint, project) = signed_https_project().await;
    project.put("hooks/tokens", "secret", "not-the-endpoint's-secret-00000");
    let embedded = project.open().await;

    // The endpoint refuses the agent at apply and again at rollback: nothing was changed, but
    // nothing could confirm the rollback either, so the run waits for a human.
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Quarantined", "{run:?}");
    assert!(run.detail.contains("refused the agent: 401"), "{}", run.detail);
    let steps: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "apply", "rollback"], "a refusal is not retried");
    assert_eq!(endpoint.signed.load(Ordering::SeqCst), 0);
    assert_eq!(endpoint.refused.load(Ordering::SeqCst), 2);
    assert_eq!(endpoint.valid(), [FIRST], "the endpoint changed nothing");
    assert_eq!(project.read("app/token", "value", Label::Current).as_deref(), Some(FIRST));
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_resolved_by_a_check_not_a_guess() {
    let endpoint = Endpoint::new(false);
    endpoint.lose_first_apply.store(true, Ordering::SeqCst);
    let (port, _) = serve(endpoint.clone(), false).await;
    let project = project(&format!("http://127.0.0.1:{port}/rotate"), "");
    let embedded = project.open().await;

    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let steps: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "apply", "check", "verify", "promote", "retire"], "{run:?}");
    let apply = &run.steps[1];
    assert_eq!(apply.outcome_name(), "indeterminate", "{apply:?}");
    assert!(apply.detail.contains("503"), "{apply:?}");
    let seen: Vec<String> = endpoint.steps.lock().unwrap().iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(seen, ["apply", "check", "verify", "retire"], "apply was not sent twice");
    let current = project.read("app/token", "value", Label::Current).unwrap();
    assert_eq!(endpoint.valid(), vec![current]);
    embedded.close().await;
}
