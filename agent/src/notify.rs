//! Delivering one notification through one channel: what an agent of the channel's segment does
//! with a delivery from the control plane's outbox. The channel's credential comes from the
//! agent's own store; the control plane never holds it.
//!
//! | channel | request |
//! |---|---|
//! | `slack` | `POST` to the incoming-webhook URL (the credential): `{"text": …}` (`channel` when the target names one) |
//! | `webhook` | `POST` to the channel's URL, signed the Standard Webhooks way: `webhook-id` (the delivery id), `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`; a `whsec_` secret is base64 |
//! | `pagerduty` | Events API v2: a failure triggers with `dedup_key` = the secret, the next completed run resolves it; other events are not sent |
//!
//! A `2xx` answer is delivered; a refused connection, a timeout, `408`, `429` or `5xx` is worth
//! another try; any other answer is final (dead letter). Email goes over SMTP with STARTTLS
//! required (never in clear), authenticated when the channel names a user, with the delivery id
//! as `Message-ID`; a transient SMTP error is worth another try, a permanent one is final.
//!
//! [`perform`] is what the agent's session does with a `Delivery` from the control plane: read
//! the credential from the agent's store, deliver, and sign the result with the agent's key.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::json;

use crate::hook::webhook::{self, WebhookSpec};
use crate::secret::SecretValue;

/// The PagerDuty Events API v2 endpoint, when a channel names no other.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// How long one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// One event for one channel, as the outbox holds it (no value: audit text only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The delivery id (`evt-<seq>.<n>`): receivers deduplicate on it.
    pub id: String,
    /// The event id (`evt-<seq>`).
    pub event_id: String,
    /// What happened (`run.completed`, ...).
    pub action: String,
    /// The secret (`env/KEY`) or other subject.
    pub subject: String,
    /// The event's text.
    pub detail: String,
    /// Who acted.
    pub actor: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// The address within the channel (a Slack channel, an email recipient).
    pub address: Option<String>,
}

impl Notification {
    /// One line for people: `dev/API_KEY: run.completed by node-1 — <detail>`.
    pub fn summary(&self) -> String {
        format!("{}: {} by {} — {}", self.subject, self.action, self.actor, self.detail)
    }

    /// The command that shows more.
    pub fn command(&self) -> String {
        match self.subject.split_once('/') {
            Some((env, key)) => format!("dsops rotation history --env {env} --key {key}"),
            None => "dsops notification list".to_owned(),
        }
    }

    fn is_failure(&self) -> bool {
        matches!(
            self.action.as_str(),
            "run.rolledback"
                | "run.quarantined"
                | "approval.denied"
                | "run.expired"
                | "review.overdue"
                | "secret.overdue"
                | "promotion.halted"
        )
    }
}

/// A channel as the agent delivers through it.
#[derive(Debug, Clone)]
pub enum ChannelSpec {
    /// A Slack incoming webhook; its URL is the credential.
    Slack,
    /// A generic webhook at a URL, signed with the credential.
    Webhook(WebhookSpec),
    /// PagerDuty Events v2 at a URL (normally [`PAGERDUTY_EVENTS_URL`]); the credential is the
    /// routing key.
    PagerDuty(WebhookSpec),
    /// An SMTP relay, STARTTLS required; the credential is the password (with a user).
    Email(EmailSpec),
}

/// An SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSpec {
    /// The server.
    pub host: String,
    /// Its port (587 by default).
    pub port: u16,
    /// The sender.
    pub from: String,
    /// The user to authenticate as, if any.
    pub username: Option<String>,
    /// A PEM file of the CAs the server's certificate must chain to (else the web roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The receiver took it.
    Yes(String),
    /// Nothing to send for this event on this channel (PagerDuty hears failures and recoveries only).
    Skipped(String),
    /// Worth another try later.
    Retry(String),
    /// Final: the receiver refused it, or the channel cannot work as configured.
    Refused(String),
}

/// The Standard Webhooks signature header value for `body` sent as `id` at `timestamp`.
pub fn standard_webhook_signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let key_bytes = match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

fn at_rfc3339(ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The generic webhook body.
pub fn webhook_body(n: &Notification) -> serde_json::Value {
    json!({
        "type": n.action,
        "timestamp": at_rfc3339(n.at_ms),
        "data": {
            "id": n.id,
            "event_id": n.event_id,
            "subject": n.subject,
            "detail": n.detail,
            "actor": n.actor,
            "command": n.command(),
        }
    })
}

/// Delivers `n` through `channel` with its `credential`.
pub async fn deliver(
    channel: &ChannelSpec,
    n: &Notification,
    credential: &SecretValue,
) -> Delivered {
    match channel {
        ChannelSpec::Slack => {
            let spec = match WebhookSpec::new(credential.expose(), DELIVERY_TIMEOUT, None, None) {
                Ok(spec) => spec,
                Err(_) => {
                    return Delivered::Refused(
                        "the Slack webhook URL in the store is not a usable https:// URL".into(),
                    );
                }
            };
            let mut body = json!({ "text": format!("{}\n`{}`", n.summary(), n.command()) });
            if let Some(address) = &n.address {
                body["channel"] = json!(address);
            }
            post(&spec, &[], &body).await
        }
        ChannelSpec::Webhook(spec) => {
            let body = webhook_body(n);
            let bytes = body.to_string().into_bytes();
            let timestamp =
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let headers = [
                ("webhook-id", n.id.clone()),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    standard_webhook_signature(credential.expose(), &n.id, timestamp, &bytes),
                ),
            ];
            classify(webhook::send(spec, &headers, bytes).await)
        }
        ChannelSpec::PagerDuty(spec) => {
            let action = if n.is_failure() {
                "trigger"
            } else if n.action == "run.completed" {
                "resolve"
            } else {
                return Delivered::Skipped(format!(
                    "PagerDuty hears failures and recoveries, not {}",
                    n.action
                ));
            };
            let mut body = json!({
                "routing_key": credential.expose(),
                "event_action": action,
                "dedup_key": format!("dsops:{}", n.subject),
            });
            if action == "trigger" {
                body["payload"] = json!({
                    "summary": n.summary().chars().take(1024).collect::<String>(),
                    "source": "dsops",
                    "severity": if n.action.ends_with(".overdue") { "warning" } else { "error" },
                    "component": n.subject,
                    "custom_details": { "event_id": n.event_id, "command": n.command() },
                });
            }
            post(spec, &[], &body).await
        }
        ChannelSpec::Email(spec) => send_mail(spec, n, credential).await,
    }
}

async fn send_mail(spec: &EmailSpec, n: &Notification, credential: &SecretValue) -> Delivered {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let Some(to) = &n.address else {
        return Delivered::Refused("an email delivery names no recipient".into());
    };
    let from = match spec.from.parse() {
        Ok(from) => from,
        Err(error) => return Delivered::Refused(format!("from {:?}: {error}", spec.from)),
    };
    let recipient = match to.parse() {
        Ok(to) => to,
        Err(error) => return Delivered::Refused(format!("recipient {to:?}: {error}")),
    };
    let message = Message::builder()
        .from(from)
        .to(recipient)
        .subject(format!("[dsops] {} {}", n.subject, n.action))
        .message_id(Some(format!("<{}@dsops>", n.id)))
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(format!(
            "{}\n\nevent {} at {}\nsee: {}\n",
            n.summary(),
            n.event_id,
            at_rfc3339(n.at_ms),
            n.command()
        ));
    let message = match message {
        Ok(message) => message,
        Err(error) => return Delivered::Refused(format!("cannot build the message: {error}")),
    };
    let mut tls = TlsParameters::builder(spec.host.clone());
    if let Some(file) = &spec.ca_file {
        let pem = match std::fs::read(file) {
            Ok(pem) => pem,
            Err(error) => {
                return Delivered::Refused(format!("ca_file {}: {error}", file.display()));
            }
        };
        match Certificate::from_pem(&pem) {
            Ok(cert) => {
                tls = tls.certificate_store(CertificateStore::None).add_root_certificate(cert)
            }
            Err(error) => {
                return Delivered::Refused(format!("ca_file {}: {error}", file.display()));
            }
        }
    } else {
        tls = tls.certificate_store(CertificateStore::WebpkiRoots);
    }
    let tls = match tls.build_rustls() {
        Ok(tls) => tls,
        Err(error) => return Delivered::Refused(format!("TLS setup: {error}")),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.host.as_str())
        .port(spec.port)
        .tls(Tls::Required(tls))
        .timeout(Some(DELIVERY_TIMEOUT));
    if let Some(user) = &spec.username {
        // PLAIN only (inside TLS): a server that refuses it says so at once, rather than the
        // client falling back to LOGIN mid-exchange.
        builder = builder
            .credentials(Credentials::new(user.clone(), credential.expose().to_owned()))
            .authentication(vec![lettre::transport::smtp::authentication::Mechanism::Plain]);
    }
    let transport = builder.build();
    // Bounded as a whole, whatever the server does between its answers.
    let sent = match tokio::time::timeout(DELIVERY_TIMEOUT, transport.send(message)).await {
        Ok(sent) => sent,
        Err(_) => {
            return Delivered::Retry(format!(
                "{} did not finish within {DELIVERY_TIMEOUT:?}",
                spec.host
            ));
        }
    };
    match sent {
        Ok(response) if response.is_positive() => {
            Delivered::Yes(format!("accepted by {}", spec.host))
        }
        Ok(response) => Delivered::Retry(format!("{} answered {}", spec.host, response.code())),
        Err(error) if error.is_permanent() => Delivered::Refused(format!("{}: {error}", spec.host)),
        Err(error) => Delivered::Retry(format!("{}: {error}", spec.host)),
    }
}

async fn post(
    spec: &WebhookSpec,
    headers: &[(&str, String)],
    body: &serde_json::Value,
) -> Delivered {
    classify(webhook::send(spec, headers, body.to_string().into_bytes()).await)
}

fn classify(result: Result<(hyper::StatusCode, Vec<u8>), webhook::SendError>) -> Delivered {
    match result {
        Ok((status, _)) if status.is_success() => Delivered::Yes(format!("answered {status}")),
        Ok((status, _))
            if status.is_server_error()
                || status == hyper::StatusCode::TOO_MANY_REQUESTS
                || status == hyper::StatusCode::REQUEST_TIMEOUT =>
        {
            Delivered::Retry(format!("answered {status}"))
        }
        Ok((status, _)) => Delivered::Refused(format!("answered {status}")),
        Err(error) => Delivered::Retry(error.message),
    }
}

/// The email channel a delivery names.
fn email_spec(delivery: &dsops_proto::wire::agent::Delivery) -> ChannelSpec {
    ChannelSpec::Email(EmailSpec {
        host: delivery.host.clone(),
        port: u16::try_from(delivery.port).ok().filter(|p| *p != 0).unwrap_or(587),
        from: delivery.from.clone(),
        username: Some(delivery.username.clone()).filter(|u| !u.is_empty()),
        ca_file: Some(std::path::PathBuf::from(&delivery.ca_file))
            .filter(|_| !delivery.ca_file.is_empty()),
    })
}

/// The notification a delivery carries.
fn notification(delivery: &dsops_proto::wire::agent::Delivery) -> Notification {
    let at_ms = delivery
        .at
        .map_or(0, |t| (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000);
    Notification {
        id: delivery.id.clone(),
        event_id: delivery.event_id.clone(),
        action: delivery.action.clone(),
        subject: delivery.subject.clone(),
        detail: delivery.detail.clone(),
        actor: delivery.actor.clone(),
        at_ms,
        address: Some(delivery.address.clone()).filter(|a| !a.is_empty()),
    }
}

/// Performs a delivery the control plane sent: reads the channel's credential from this
/// agent's store, delivers, and returns the signed result for the session to send.
pub async fn perform(
    executor: &crate::executor::Executor,
    delivery: &dsops_proto::wire::agent::Delivery,
) -> dsops_proto::wire::agent::DeliveryResult {
    let (outcome, detail) = match perform_inner(executor, delivery).await {
        Delivered::Yes(detail) => ("delivered", detail),
        Delivered::Skipped(detail) => ("skipped", detail),
        Delivered::Retry(detail) => ("retry", detail),
        Delivered::Refused(detail) => ("refused", detail),
    };
    let at_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = json!({
        "id": delivery.id,
        "attempt": delivery.attempt,
        "outcome": outcome,
        "detail": detail.chars().take(512).collect::<String>(),
        "at_ms": at_ms,
    })
    .to_string()
    .into_bytes();
    let signature = ed25519_dalek::Signer::sign(&executor.identity().signing_key, &body);
    dsops_proto::wire::agent::DeliveryResult { body, signature: signature.to_bytes().to_vec() }
}

async fn perform_inner(
    executor: &crate::executor::Executor,
    delivery: &dsops_proto::wire::agent::Delivery,
) -> Delivered {
    if delivery.channel_type == "email" && delivery.credential_ref.is_empty() {
        let none = SecretValue::new(String::new());
        return deliver(&email_spec(delivery), &notification(delivery), &none).await;
    }
    let reference = match dsops_proto::domain::StoreRef::parse(&delivery.credential_ref) {
        Ok(reference) => reference,
        Err(error) => return Delivered::Refused(format!("credential: {error}")),
    };
    let Some(field) = reference.field.clone() else {
        return Delivered::Refused("credential: the reference names no field".into());
    };
    let store = match executor.store(&reference.store) {
        Ok(store) => store,
        Err(error) => return Delivered::Refused(format!("credential: {error}")),
    };
    let credential = match store.read(&reference.path, crate::store::Label::Current) {
        Ok(Some(fields)) => match fields.get(&field) {
            Some(value) => value.clone(),
            None => {
                return Delivered::Refused(format!(
                    "credential: {} has no field {field}",
                    reference.path
                ));
            }
        },
        Ok(None) => {
            return Delivered::Refused(format!(
                "credential: no entry {} in store {}",
                reference.path, reference.store
            ));
        }
        Err(error) => return Delivered::Retry(format!("credential: {error}")),
    };
    let ca_file =
        Some(std::path::PathBuf::from(&delivery.ca_file)).filter(|_| !delivery.ca_file.is_empty());
    let url = |default: &str| {
        let url = if delivery.url.is_empty() { default } else { delivery.url.as_str() };
        WebhookSpec::new(url, DELIVERY_TIMEOUT, None, ca_file.clone())
    };
    let channel = match delivery.channel_type.as_str() {
        "slack" => ChannelSpec::Slack,
        "webhook" => match url("") {
            Ok(spec) => ChannelSpec::Webhook(spec),
            Err(error) => return Delivered::Refused(error),
        },
        "pagerduty" => match url(PAGERDUTY_EVENTS_URL) {
            Ok(spec) => ChannelSpec::PagerDuty(spec),
            Err(error) => return Delivered::Refused(error),
        },
        "email" => email_spec(delivery),
        other => {
            return Delivered::Refused(format!(
                "this agent cannot deliver through {other} channels"
            ));
        }
    };
    deliver(&channel, &notification(delivery), &credential).await
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
