//! Certificates from an ACME CA (RFC 8555: Let's Encrypt, step-ca, pebble) through
//! `instant-acme`. The account key lives in the agent's store (`account_store`, created on first
//! use); the certificate key is generated here and only its CSR leaves the agent. Challenges:
//! `http-01`, answered by a listener the agent opens for the order on `http01_listen`, and
//! `dns-01`, where the agent runs `dns01_command` to set and then clear the TXT record
//! (environment `DSOPS_ACME_ACTION` = `set`|`clear`, `DSOPS_ACME_NAME`, `DSOPS_ACME_VALUE`).
//! A rate-limited or unreachable server is a retryable failure: the control plane backs off, at
//! least as long as the CA's `Retry-After` asked (`agent/src/acme_http.rs`), never a tight loop; a
//! failed order changes nothing stored. When the CA offers renewal information (ARI, RFC 9773),
//! the agent asks it about each new certificate and reports a time picked at random in the
//! suggested window; the control plane renews then instead of by `renew_before`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dsops_proto::domain::StoreRef;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::acme_http::Transport;
use crate::certificate::{CERT_FIELD, CHAIN_FIELD, KEY_FIELD, Request};
use crate::secret::SecretValue;
use crate::store::Fields;

/// The field of the account entry that holds the account's credentials (JSON, with its key).
pub const ACCOUNT_FIELD: &str = "credentials";

/// How the agent proves it controls the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `http-01`: a listener on this address serves `/.well-known/acme-challenge/<token>`.
    Http01 {
        /// `host:port` to listen on (the names must reach it on port 80 through the network).
        listen: String,
    },
    /// `dns-01`: this command sets and clears `_acme-challenge.<name>` TXT records.
    Dns01 {
        /// The program and its arguments.
        command: Vec<String>,
    },
}

/// An `acme-certificate` service as the agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSpec {
    /// The directory URL.
    pub directory: String,
    /// The store entry of the account (field `credentials`).
    pub account: StoreRef,
    /// The names certificates are for, unless the variable lists its own.
    pub domains: Vec<String>,
    /// `mailto:` contact for the account.
    pub contact: Option<String>,
    /// A PEM file of the CA that signs the directory's TLS certificate (test CAs).
    pub ca_bundle: Option<PathBuf>,
    /// The challenge.
    pub challenge: Challenge,
}

/// Why an ACME step failed, and whether retrying later may help.
#[derive(Debug)]
pub struct AcmeError {
    /// Retrying later may work (rate limit, unreachable server, a timeout).
    pub retryable: bool,
    /// What happened; never a key.
    pub message: String,
    /// The wait the CA asked for (`Retry-After`) before trying again.
    pub retry_after: Option<Duration>,
}

fn failed(retryable: bool, message: impl Into<String>) -> AcmeError {
    AcmeError { retryable, message: message.into(), retry_after: None }
}

/// An account and the transport it talks through.
pub struct Acme {
    account: Account,
    transport: Transport,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acme { .. }")
    }
}

/// A library error as [`classify`] sees it, with the wait the CA asked for when retryable.
fn classify_with(transport: &Transport, what: &str, error: instant_acme::Error) -> AcmeError {
    let mut failure = classify(what, error);
    let asked = transport.take_retry_after();
    if failure.retryable {
        failure.retry_after = asked;
        if let Some(wait) = asked {
            failure.message.push_str(&format!(" (the CA asked to wait {}s)", wait.as_secs()));
        }
    }
    failure
}

/// A library error, classed: rate limits, server errors and transport failures are retryable.
fn classify(what: &str, error: instant_acme::Error) -> AcmeError {
    match &error {
        instant_acme::Error::Api(problem) => {
            let kind = problem.r#type.as_deref().unwrap_or_default();
            let retryable = kind.ends_with(":rateLimited")
                || kind.ends_with(":serverInternal")
                || kind.ends_with(":badNonce")
                || problem.status.is_some_and(|s| s >= 500);
            let detail = problem.detail.as_deref().unwrap_or_default();
            let hint = if kind.ends_with(":rateLimited") {
                " (rate limited: the run backs off and tries again later)"
            } else {
                ""
            };
            failed(retryable, format!("{what}: {kind}: {detail}{hint}"))
        }
        instant_acme::Error::Timeout(_)
        | instant_acme::Error::Http(_)
        | instant_acme::Error::Other(_) => failed(true, format!("{what}: {error}")),
        _ => failed(false, format!("{what}: {error}")),
    }
}

fn transport(spec: &AcmeSpec) -> Result<Transport, AcmeError> {
    Transport::new(spec.ca_bundle.as_deref()).map_err(|why| failed(false, why))
}

/// The account: from its stored credentials, or created (and the credentials returned to be
/// stored) when there are none.
pub async fn account(
    spec: &AcmeSpec,
    stored: Option<&SecretValue>,
) -> Result<(Acme, Option<SecretValue>), AcmeError> {
    let transport = transport(spec)?;
    let builder = Account::builder_with_http(Box::new(transport.clone()));
    if let Some(stored) = stored {
        let credentials: AccountCredentials =
            serde_json::from_str(stored.expose()).map_err(|e| {
                failed(false, format!("{}: not ACME account credentials: {e}", spec.account))
            })?;
        let account = builder
            .from_credentials(credentials)
            .await
            .map_err(|e| classify_with(&transport, "loading the ACME account", e))?;
        return Ok((Acme { account, transport }, None));
    }
    let contact: Vec<&str> = spec.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let (account, credentials) = builder
        .create(&new, spec.directory.clone(), None)
        .await
        .map_err(|e| classify_with(&transport, "creating the ACME account", e))?;
    let text = serde_json::to_string(&credentials)
        .map_err(|e| failed(false, format!("storing the account: {e}")))?;
    Ok((Acme { account, transport }, Some(SecretValue::new(text))))
}

/// Tokens being answered by an `http-01` listener: token → key authorization.
type Tokens = Arc<Mutex<BTreeMap<String, String>>>;

/// Serves `GET /.well-known/acme-challenge/<token>` from `tokens` on `listener` until dropped.
async fn serve_http01(listener: tokio::net::TcpListener, tokens: Tokens) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
                    Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buffer[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&request);
            let path = line.split_whitespace().nth(1).unwrap_or_default();
            let answer = path
                .strip_prefix("/.well-known/acme-challenge/")
                .and_then(|token| tokens.lock().ok()?.get(token).cloned());
            let response = match answer {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Runs the `dns-01` command for one record.
async fn dns_command(
    command: &[String],
    action: &str,
    name: &str,
    value: &str,
) -> Result<(), AcmeError> {
    let (program, args) =
        command.split_first().ok_or_else(|| failed(false, "dns01_command is empty"))?;
    let run = tokio::process::Command::new(program)
        .args(args)
        .env("DSOPS_ACME_ACTION", action)
        .env("DSOPS_ACME_NAME", name)
        .env("DSOPS_ACME_VALUE", value)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| failed(true, format!("dns01_command ({action} {name}) took over 60s")))?
        .map_err(|e| failed(false, format!("dns01_command {program}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(failed(
        true,
        format!(
            "dns01_command ({action} {name}) failed: {}",
            stderr.trim().chars().take(300).collect::<String>()
        ),
    ))
}

/// Orders a certificate for `request.names` with a new key of `request.key_type`: the fields
/// `cert`, `key` and `chain` to store. `timeout` bounds the whole order.
pub async fn order(
    spec: &AcmeSpec,
    acme: &Acme,
    request: &Request,
    timeout: Duration,
) -> Result<Fields, AcmeError> {
    tokio::time::timeout(timeout, order_within(spec, acme, request))
        .await
        .unwrap_or_else(|_| Err(failed(true, format!("the ACME order took over {timeout:?}"))))
}

/// When the CA suggests renewing the certificate in `fields` (ARI, RFC 9773): a time picked
/// uniformly at random in its suggested window, as the RFC asks, and a note for the receipt.
/// `None` when the CA offers no renewal information or could not answer; the configured
/// `renew_before` then applies.
pub async fn renewal_time(acme: &Acme, fields: &Fields) -> (Option<SystemTime>, String) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let Some(Ok(leaf)) =
        fields.get(CERT_FIELD).map(|c| CertificateDer::from_pem_slice(c.expose().as_bytes()))
    else {
        return (None, "no certificate to ask renewal information about".to_owned());
    };
    let id = match CertificateIdentifier::try_from(&leaf) {
        Ok(id) => id,
        Err(e) => return (None, format!("no renewal information: {e}")),
    };
    let window = match acme.account.renewal_info(&id).await {
        Ok((info, _)) => info.suggested_window,
        Err(instant_acme::Error::Unsupported(_)) => {
            return (
                None,
                "the CA offers no renewal information (ARI); renew_before applies".to_owned(),
            );
        }
        Err(e) => {
            return (None, format!("renewal information unavailable ({e}); renew_before applies"));
        }
    };
    let (start, end) = (window.start.unix_timestamp(), window.end.unix_timestamp());
    if end < start || start < 0 {
        return (None, "the CA's renewal window is malformed; renew_before applies".to_owned());
    }
    let mut bytes = [0u8; 8];
    let picked = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
    {
        Ok(()) => start + (u64::from_le_bytes(bytes) % ((end - start) as u64 + 1)) as i64,
        Err(_) => start,
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(picked as u64);
    let format = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    (
        Some(at),
        format!(
            "renewal window from the CA (ARI): {} to {}",
            format(window.start),
            format(window.end)
        ),
    )
}

async fn order_within(
    spec: &AcmeSpec,
    acme: &Acme,
    request: &Request,
) -> Result<Fields, AcmeError> {
    let (account, classify) = (&acme.account, |what: &str, e: instant_acme::Error| {
        classify_with(&acme.transport, what, e)
    });
    let identifiers: Vec<Identifier> = request
        .names
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(ip) => Identifier::Ip(ip),
            Err(_) => Identifier::Dns(name.clone()),
        })
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| classify("creating the order", e))?;
    let tokens: Tokens = Arc::default();
    let mut listener_task = None;
    if let Challenge::Http01 { listen } = &spec.challenge {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| failed(true, format!("http-01: cannot listen on {listen}: {e}")))?;
        listener_task = Some(tokio::spawn(serve_http01(listener, tokens.clone())));
    }
    let _stop = StopOnDrop(listener_task);
    let mut records = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| classify("reading an authorization", e))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(failed(false, format!("an authorization is {other:?}")));
                }
            }
            let kind = match spec.challenge {
                Challenge::Http01 { .. } => ChallengeType::Http01,
                Challenge::Dns01 { .. } => ChallengeType::Dns01,
            };
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or_else(|| failed(false, format!("the server offers no {kind:?} challenge")))?;
            let key_authorization = challenge.key_authorization();
            match &spec.challenge {
                Challenge::Http01 { .. } => {
                    if let Ok(mut tokens) = tokens.lock() {
                        tokens
                            .insert(challenge.token.clone(), key_authorization.as_str().to_owned());
                    }
                }
                Challenge::Dns01 { command } => {
                    let name = format!("_acme-challenge.{}.", challenge.identifier());
                    let value = key_authorization.dns_value();
                    dns_command(command, "set", &name, &value).await?;
                    records.push((name, value));
                }
            }
            challenge.set_ready().await.map_err(|e| classify("answering a challenge", e))?;
        }
        let policy = RetryPolicy::default().timeout(Duration::from_secs(60));
        let status =
            order.poll_ready(&policy).await.map_err(|e| classify("waiting for validation", e))?;
        if status != OrderStatus::Ready {
            let detail = order.state().error.as_ref().map(|p| format!(": {p}")).unwrap_or_default();
            return Err(failed(false, format!("the order is {status:?}, not ready{detail}")));
        }
        let algorithm = match request.key_type.as_str() {
            "ecdsa-p384" => &rcgen::PKCS_ECDSA_P384_SHA384,
            "ed25519" => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        let key = rcgen::KeyPair::generate_for(algorithm)
            .map_err(|e| failed(false, format!("generating the key: {e}")))?;
        let params = rcgen::CertificateParams::new(request.names.clone())
            .map_err(|e| failed(false, format!("the names: {e}")))?;
        let csr =
            params.serialize_request(&key).map_err(|e| failed(false, format!("the CSR: {e}")))?;
        order.finalize_csr(csr.der()).await.map_err(|e| classify("finalizing", e))?;
        let pem = order
            .poll_certificate(&policy)
            .await
            .map_err(|e| classify("downloading the certificate", e))?;
        split_chain(&pem, key.serialize_pem())
    }
    .await;
    if let Challenge::Dns01 { command } = &spec.challenge {
        for (name, value) in &records {
            // Best effort: a record left behind is harmless, and the next order sets its own.
            let _ = dns_command(command, "clear", name, value).await;
        }
    }
    result
}

/// Aborts the `http-01` listener when the order ends.
struct StopOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Splits the downloaded chain into the leaf (`cert`) and the rest (`chain`).
fn split_chain(pem: &str, key: String) -> Result<Fields, AcmeError> {
    let marker = "-----END CERTIFICATE-----";
    let end = pem
        .find(marker)
        .map(|i| i + marker.len())
        .ok_or_else(|| failed(false, "the server returned no certificate"))?;
    let (leaf, rest) = pem.split_at(end);
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(failed(false, "the server returned no issuing chain"));
    }
    let mut fields = Fields::new();
    fields.insert(CERT_FIELD.to_owned(), SecretValue::new(format!("{leaf}\n")));
    fields.insert(KEY_FIELD.to_owned(), SecretValue::new(key));
    fields.insert(CHAIN_FIELD.to_owned(), SecretValue::new(rest.to_owned()));
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_splits_into_leaf_and_issuers() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let fields = split_chain(pem, "KEY".to_owned()).unwrap();
        assert!(fields[CERT_FIELD].expose().contains("AAA"));
        assert!(!fields[CERT_FIELD].expose().contains("BBB"));
        assert!(fields[CHAIN_FIELD].expose().starts_with("-----BEGIN CERTIFICATE-----\nBBB"));
        assert!(split_chain(&pem[..58], String::new()).is_err());
    }
}
