//! The agent API: enrolment with a one-time token, then one long-lived session per agent.
//!
//! ```text
//!  agent ── Hello ─────────────▶ leader: identity from the agent certificate, record from state
//!        ◀──────────── Welcome ─           (unknown or revoked: refused, audited)
//!        ◀── Job ── dispatcher (AgentRegistry)
//!        ── Receipt ─▶ RecordReceipt (raft; the state machine verifies the signature)
//!        ◀─ ReceiptAck
//!        ── Heartbeat / Renew ─▶
//! ```
//!
//! Sessions live on the leader, where the dispatcher runs: a follower answers `Redirect` with the
//! leader's address. A session ends when the agent or its certificate is revoked (the state
//! machine notices sessions after applying a revocation: no session polls the state), when its
//! certificate expires, when its heartbeats stop for [`SILENCE`], or when this node stops
//! leading (a notice when the leader changes). An idle session costs nothing between its
//! heartbeats.

use std::pin::Pin;
use std::time::Duration;

use dsops_proto::ErrorCode;
use dsops_proto::domain::{EnrollRequest, Heartbeat, Hello, SignedReceipt};
use dsops_proto::wire::agent as wire;
use dsops_proto::wire::agent::agent_service_server::AgentService as AgentApi;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::token_bucket::TokenBucket;
use crate::control::ControlPlane;
use crate::control::agents::SessionInfo;
use crate::pki::{CallerIdentity, ConnInfo, Role, caller_of};
use crate::rotation::ReceiptError;
use dsops_identity::JoinToken;
use dsops_state::{AgentRecord, Command};

/// How often agents send heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A session without a message for this long is closed.
pub const SILENCE: Duration = Duration::from_secs(20);
/// How long a new session may take to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest message an agent may send (a receipt is at most 4 KiB; a renewal CSR about 1 KiB).
pub const MAX_AGENT_MESSAGE: usize = 64 * 1024;
/// Messages per second one session may send, sustained (and in one burst): far above what an
/// agent's receipts and heartbeats need, and a bound on what a hostile one costs.
pub const MESSAGES_PER_SECOND: u32 = 5_000;

/// How long agent certificates last unless the operator chose otherwise.
pub const AGENT_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Serves `AgentService`.
#[derive(Debug, Clone)]
pub struct AgentService {
    control: ControlPlane,
    cert_validity: Duration,
    shutdown: watch::Receiver<bool>,
}

impl AgentService {
    /// The agent service of `control`, issuing certificates valid for `cert_validity`. Its
    /// sessions end when `shutdown` turns true.
    pub fn new(
        control: ControlPlane,
        cert_validity: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> AgentService {
        AgentService { control, cert_validity, shutdown }
    }
}

/// A new random agent id.
fn new_agent_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("agt-{}", dsops_proto::hex(&bytes))
}

fn ms_of(time: time::OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<wire::ControlMessage, Status>> + Send>>;

fn message(kind: wire::control_message::Kind) -> Result<wire::ControlMessage, Status> {
    Ok(wire::ControlMessage { kind: Some(kind) })
}

/// The agent identity in a session's verified certificate.
fn agent_of<T>(request: &Request<T>) -> Result<CallerIdentity, Status> {
    caller_of(
        request,
        Role::Agent,
        "open agent sessions",
        "an agent certificate is required (enrol with dsops-agent enroll)",
    )
}

/// The agent a session's certificate names, with its record; refusals are audited.
async fn authenticate<T>(
    control: &ControlPlane,
    request: &Request<T>,
) -> Result<(AgentRecord, CallerIdentity), Status> {
    let identity = agent_of(request)?;
    let agent_id = identity.name.clone();
    let (record, revoked) = control
        .read_local(|state| {
            let revoked = state.is_revoked("agent", &agent_id, identity.issued_ms);
            (state.agents.get(&agent_id).cloned(), revoked)
        })
        .await;
    let refusal = match &record {
        None => Some(format!("agent {agent_id} is not enrolled in this cluster")),
        Some(record) if record.revoked_at_ms.is_some() || revoked => {
            Some(format!("agent {agent_id} is revoked"))
        }
        Some(_) if dsops_proto::now_ms() >= identity.not_after_ms => {
            Some(format!("the certificate of agent {agent_id} has expired"))
        }
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        // A refused agent that keeps reconnecting is counted, and summarised once an interval.
        let source = request.extensions().get::<ConnInfo>().and_then(|i| i.remote);
        let source = source.map(|a| a.ip().to_string());
        control.refusals().count(
            "agent.session_refused",
            &format!("agent {agent_id}"),
            &reason,
            source.as_deref(),
            None,
        );
        return Err(ErrorCode::PermissionDenied.to_status(reason));
    }
    Ok((record.expect("checked above"), identity))
}

#[tonic::async_trait]
impl AgentApi for AgentService {
    async fn enroll(
        &self,
        request: Request<wire::EnrollRequest>,
    ) -> Result<Response<wire::EnrollResponse>, Status> {
        let request = EnrollRequest::try_from(request.into_inner())
            .map_err(|e| ErrorCode::InvalidArgument.to_status(e.to_string()))?;
        let token = JoinToken::parse_agent(&request.token)
            .map_err(|e| ErrorCode::InvalidArgument.to_status(e))?;
        if token.ca_fingerprint != self.control.peer_fingerprint() {
            return Err(ErrorCode::PermissionDenied
                .to_status("the token was made for another cluster (its CA fingerprint differs)"));
        }
        // Check the token against this node's state before anything costs a signature or a
        // raft entry: an unknown, used or expired token is refused here, so no caller without
        // a valid token can write to the replicated log. (The state machine checks again: two
        // enrolments racing with one token, or a follower's stale view.)
        let token_hash = JoinToken::secret_hash(&token.secret);
        let now = dsops_proto::now_ms();
        let known = self
            .control
            .read_local(|state| {
                state.agent_tokens.get(&token_hash).map(|t| (t.used_by.is_some(), t.expires_at_ms))
            })
            .await;
        match known {
            None => {
                return Err(ErrorCode::PermissionDenied.to_status("unknown enrolment token"));
            }
            Some((true, _)) => {
                return Err(
                    ErrorCode::PermissionDenied.to_status("the enrolment token was already used")
                );
            }
            Some((_, expires)) if expires <= now => {
                return Err(
                    ErrorCode::PermissionDenied.to_status("the enrolment token has expired")
                );
            }
            Some(_) => {}
        }
        if !self.control.is_leader() {
            let leader = self.control.leader().map(|(_, a)| a);
            return Err(dsops_proto::error::not_leader_status(leader.as_deref()));
        }
        let agent_id = new_agent_id();
        let (certificate_pem, not_after) = self
            .control
            .pki()
            .sign_agent_csr(&request.csr_pem, &agent_id, self.cert_validity)
            .map_err(|e| ErrorCode::InvalidArgument.to_status(e.to_string()))?;
        let command = Command::EnrollAgent {
            token_hash: token_hash.clone(),
            agent_id: agent_id.clone(),
            public_key: dsops_proto::hex(&request.signing_public_key),
            hostname: request.hostname.clone(),
            version: request.version.clone(),
            cert_not_after_ms: ms_of(not_after),
        };
        // A fresh id per attempt: the token, not the request id, makes enrolment one-time (a
        // retry of a lost answer could not use the certificate anyway: it has a new key).
        let request_id = format!("enroll-{agent_id}");
        self.control
            .write(&format!("enrolling {}", request.hostname), &request_id, command)
            .await
            .map_err(|e| e.to_status())?;
        let segment = self
            .control
            .read_local(|state| state.agents.get(&agent_id).map(|a| a.segment.clone()))
            .await
            .ok_or_else(|| {
                ErrorCode::Unavailable.to_status("the enrolment was not applied here yet; retry")
            })?;
        tracing::info!(%agent_id, %segment, host = %request.hostname, "agent enrolled");
        let pki = self.control.pki();
        Ok(Response::new(wire::EnrollResponse {
            agent_id,
            segment,
            certificate_pem,
            ca_certificate_pem: pki.agent.cert_pem.clone(),
            server_ca_certificate_pem: pki.peer.cert_pem.clone(),
            not_after: Some(dsops_proto::domain::timestamp_ms(ms_of(not_after))),
        }))
    }

    type SessionStream = ControlStream;

    async fn session(
        &self,
        request: Request<Streaming<wire::AgentMessage>>,
    ) -> Result<Response<ControlStream>, Status> {
        let (out, out_stream) = mpsc::channel::<Result<wire::ControlMessage, Status>>(64);
        let stream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(out_stream));
        // A follower sends the agent on before judging it: its view of the agents may lag the
        // leader's (a just-enrolled agent), and the leader checks everything again.
        if !self.control.is_leader() {
            agent_of(&request)?;
            let leader_address = self.control.leader().map(|(_, a)| a).unwrap_or_default();
            let _ = out
                .send(message(wire::control_message::Kind::Redirect(wire::Redirect {
                    leader_address,
                })))
                .await;
            return Ok(Response::new(stream));
        }
        let (record, identity) = authenticate(&self.control, &request).await?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(wire::AgentMessage {
                kind: Some(wire::agent_message::Kind::Hello(h)),
            }))) => Hello::try_from(h)
                .map_err(|e| ErrorCode::InvalidArgument.to_status(e.within("hello").to_string()))?,
            Ok(Ok(_)) => {
                return Err(ErrorCode::InvalidArgument
                    .to_status("the first message of a session must be a Hello"));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(ErrorCode::InvalidArgument.to_status("no Hello in time")),
        };
        let session = Session {
            control: self.control.clone(),
            agent: record,
            identity,
            renewed: std::sync::atomic::AtomicBool::new(false),
            cert_validity: self.cert_validity,
            out,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(session.run(hello, inbound));
        Ok(Response::new(stream))
    }
}

/// One live session on the leader.
struct Session {
    control: ControlPlane,
    agent: AgentRecord,
    /// The certificate the session was opened with: when it expires the session ends (the
    /// agent reconnects with its renewed one).
    identity: CallerIdentity,
    /// A session renews its certificate once at most.
    renewed: std::sync::atomic::AtomicBool,
    cert_validity: Duration,
    out: mpsc::Sender<Result<wire::ControlMessage, Status>>,
    shutdown: watch::Receiver<bool>,
}

/// How long from now until `at_ms` (ms since the epoch) on the wall clock; zero if past.
fn until_ms(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(dsops_proto::now_ms()))
}

/// Why a session ended.
enum End {
    /// The agent hung up or the stream broke.
    Closed,
    /// The session must stop with this status (revoked, protocol error, silence).
    Fail(Status),
    /// This node stopped leading: send the agent to the new leader.
    Redirect,
}

impl Session {
    async fn run(mut self, hello: Hello, mut inbound: Streaming<wire::AgentMessage>) {
        let agent_id = self.agent.agent_id.clone();
        let (jobs, mut queue) = mpsc::unbounded_channel();
        let info = SessionInfo {
            agent_id: agent_id.clone(),
            segment: self.agent.segment.clone(),
            version: hello.version.clone(),
            capabilities: hello.capabilities.clone(),
        };
        let registry = self.control.agents().clone();
        let (session, close) = registry.connect_session(info, jobs);
        let (deliveries, mut delivery_queue) = mpsc::unbounded_channel();
        registry.take_deliveries(&agent_id, session, &self.agent.segment, deliveries);
        tracing::info!(%agent_id, segment = %self.agent.segment, session, "agent session open");
        let welcome = wire::Welcome {
            agent_id: agent_id.clone(),
            segment: self.agent.segment.clone(),
            heartbeat_interval_ms: HEARTBEAT.as_millis() as u32,
        };
        let _ = self.out.send(message(wire::control_message::Kind::Welcome(welcome))).await;
        // What may end the session arrives as notices: revocations applied, the leader changing,
        // the certificate's expiry, silence. Subscribed before the first look, so nothing
        // applied since the handshake's look is missed.
        let mut revocations = self.control.revocations();
        let mut leader = self.control.leader_changes_watch();
        // The expiry is wall-clock time and the timer monotonic: a clock stepped forward or a
        // host resumed from suspend moves the one and not the other, so the timer looks again at
        // least every SILENCE.
        let expiry_look = || until_ms(self.identity.not_after_ms).min(SILENCE);
        let expiry = tokio::time::sleep(expiry_look());
        let silence = tokio::time::sleep(SILENCE);
        tokio::pin!(expiry, silence);
        let mut bucket = TokenBucket::new(MESSAGES_PER_SECOND, tokio::time::Instant::now());
        let first_look = self.revoked().await;
        let end = if let Some(end) = first_look {
            end
        } else {
            loop {
                tokio::select! {
                    job = queue.recv() => match job {
                        Some(job) => {
                            let job = wire::Job::from(&job);
                            if self.out.send(message(wire::control_message::Kind::Job(job))).await.is_err() {
                                break End::Closed;
                            }
                        }
                        None => break End::Closed,
                    },
                    Some(task) = delivery_queue.recv() => {
                        if self.out.send(message(task)).await.is_err() {
                            break End::Closed;
                        }
                    }
                    received = inbound.message() => match received {
                        Ok(Some(msg)) => {
                            silence.as_mut().reset(tokio::time::Instant::now() + SILENCE);
                            // Past the session's rate, the next message waits: the agent's stream
                            // is slowed (flow control), nothing it sent is dropped.
                            if let Some(wait) = bucket.take(tokio::time::Instant::now()) {
                                tokio::time::sleep(wait).await;
                            }
                            if let Err(end) = self.handle(msg, session).await {
                                break end;
                            }
                        }
                        Ok(None) => break End::Closed,
                        Err(status) if status.code() == tonic::Code::OutOfRange => {
                            // Over the size limit: say so, so the agent drops what it sent.
                            let why = format!("a message exceeded the {MAX_AGENT_MESSAGE}-byte limit");
                            self.control.refusals().count("agent.message_refused", &format!("agent {agent_id}"), &why, None, None);
                            break End::Fail(ErrorCode::InvalidArgument.to_status(why));
                        }
                        Err(_) => break End::Closed,
                    },
                    _ = self.shutdown.changed() => break End::Fail(ErrorCode::Unavailable.to_status("the node is stopping")),
                    () = close.notified() => {
                        break End::Fail(ErrorCode::PermissionDenied.to_status(format!("the session of agent {agent_id} was closed (revoked or replaced)")));
                    }
                    changed = revocations.changed() => {
                        if changed.is_err() {
                            break End::Fail(ErrorCode::Unavailable.to_status("the node is stopping"));
                        }
                        if let Some(end) = self.revoked().await {
                            break end;
                        }
                    }
                    changed = leader.changed() => {
                        if changed.is_err() {
                            break End::Fail(ErrorCode::Unavailable.to_status("the node is stopping"));
                        }
                        if !self.control.is_leader() {
                            break End::Redirect;
                        }
                    }
                    () = &mut expiry => {
                        if dsops_proto::now_ms() >= self.identity.not_after_ms {
                            break End::Fail(ErrorCode::Unavailable.to_status(format!(
                                "the certificate of agent {agent_id} this session was opened with has expired; reconnect with the renewed one"
                            )));
                        }
                        expiry.as_mut().reset(tokio::time::Instant::now() + expiry_look());
                    }
                    () = &mut silence => {
                        break End::Fail(ErrorCode::Unavailable.to_status("no heartbeat; reconnect"));
                    }
                }
            }
        };
        registry.disconnect(&agent_id, session);
        match end {
            End::Closed => {}
            End::Fail(status) => {
                let _ = self.out.send(Err(status)).await;
            }
            End::Redirect => {
                let leader_address = self.control.leader().map(|(_, a)| a).unwrap_or_default();
                let redirect = wire::Redirect { leader_address };
                let _ =
                    self.out.send(message(wire::control_message::Kind::Redirect(redirect))).await;
            }
        }
        tracing::info!(%agent_id, session, "agent session closed");
    }

    /// Whether the session must end because its agent or its certificate is revoked, or this
    /// node no longer leads.
    async fn revoked(&self) -> Option<End> {
        let agent_id = &self.agent.agent_id;
        let issued = self.identity.issued_ms;
        let revoked = self
            .control
            .read_local(|state| {
                state.agents.get(agent_id).is_none_or(|a| a.revoked_at_ms.is_some())
                    || state.is_revoked("agent", agent_id, issued)
            })
            .await;
        if revoked {
            return Some(End::Fail(
                ErrorCode::PermissionDenied.to_status(format!("agent {agent_id} is revoked")),
            ));
        }
        if !self.control.is_leader() {
            return Some(End::Redirect);
        }
        None
    }

    /// Handles one message from the agent.
    async fn handle(&self, msg: wire::AgentMessage, session: u64) -> Result<(), End> {
        let invalid = |what: String| End::Fail(ErrorCode::InvalidArgument.to_status(what));
        match msg.kind {
            Some(wire::agent_message::Kind::Heartbeat(heartbeat)) => {
                Heartbeat::try_from(heartbeat)
                    .map_err(|e| invalid(e.within("heartbeat").to_string()))?;
                self.control.agents().heartbeat(&self.agent.agent_id, session);
                Ok(())
            }
            Some(wire::agent_message::Kind::Receipt(receipt)) => {
                let receipt = match SignedReceipt::try_from(receipt.clone()) {
                    Ok(receipt) => receipt,
                    Err(error) => return self.refuse_malformed(&receipt, &error.to_string()).await,
                };
                let verdict =
                    crate::rotation::submit_receipt(&self.control, &receipt, &self.agent.agent_id)
                        .await;
                let (accepted, reason) = match verdict {
                    Ok(()) => (true, String::new()),
                    Err(ReceiptError::Refused(reason)) => (false, reason),
                    Err(ReceiptError::NotCommitted(error)) => {
                        // No verdict: the agent keeps the receipt and sends it again on its next
                        // session (with the new leader, if this node lost its lead).
                        tracing::debug!(%error, "receipt not committed here");
                        return Ok(());
                    }
                };
                let ack = wire::ReceiptAck {
                    run_id: receipt.body.run_id.to_string(),
                    step: receipt.body.step.to_wire(),
                    accepted,
                    reason,
                };
                let _ = self.out.send(message(wire::control_message::Kind::ReceiptAck(ack))).await;
                Ok(())
            }
            Some(wire::agent_message::Kind::Renew(renew)) => {
                let renewed = self.renew(&renew.csr_pem).await.map_err(End::Fail)?;
                let _ = self.out.send(message(wire::control_message::Kind::Renewed(renewed))).await;
                Ok(())
            }
            Some(wire::agent_message::Kind::DeliveryResult(result)) => {
                crate::rotation::notifier::record_result(&self.control, &self.agent, &result).await;
                Ok(())
            }
            Some(wire::agent_message::Kind::PreflightResult(result)) => {
                if result.checks.len() <= 32 {
                    self.control.agents().preflight_answered(result);
                }
                Ok(())
            }
            Some(wire::agent_message::Kind::HealthResult(result)) => {
                crate::rotation::promotion::record_health(&self.control, &self.agent, &result)
                    .await;
                Ok(())
            }
            Some(wire::agent_message::Kind::Hello(_)) => {
                Err(invalid("Hello may only be the first message of a session".to_owned()))
            }
            None => Err(invalid("empty message".to_owned())),
        }
    }

    /// Answers a receipt that does not convert (too big, a field out of range) with a refusal
    /// naming its run and step, so the agent drops it instead of sending it again on every
    /// session; a receipt too broken to name them ends the session.
    async fn refuse_malformed(
        &self,
        receipt: &dsops_proto::wire::common::Receipt,
        error: &str,
    ) -> Result<(), End> {
        use prost::Message;
        let agent_id = &self.agent.agent_id;
        let reason = format!("malformed receipt: {error}");
        self.control.refusals().count(
            "receipt.refused",
            &format!("agent {agent_id}"),
            "malformed receipt",
            None,
            Some(&reason),
        );
        let Ok(body) = dsops_proto::wire::common::ReceiptBody::decode(receipt.body.as_slice())
        else {
            return Err(End::Fail(ErrorCode::InvalidArgument.to_status(reason)));
        };
        let ack =
            wire::ReceiptAck { run_id: body.run_id, step: body.step, accepted: false, reason };
        let _ = self.out.send(message(wire::control_message::Kind::ReceiptAck(ack))).await;
        Ok(())
    }

    async fn renew(&self, csr_pem: &str) -> Result<wire::RenewResponse, Status> {
        let agent_id = &self.agent.agent_id;
        // Bounded: once per session, and only in the second half of the certificate's life
        // (agents renew at two thirds), so no agent can turn renewals into a stream of
        // signatures and raft writes.
        let (issued, expires) = (self.identity.issued_ms, self.identity.not_after_ms);
        let half = issued + expires.saturating_sub(issued) / 2;
        if dsops_proto::now_ms() < half {
            return Err(ErrorCode::FailedPrecondition.to_status(format!(
                "renewal refused: the certificate of agent {agent_id} has more than half its life left"
            )));
        }
        if self.renewed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ErrorCode::FailedPrecondition.to_status(format!(
                "renewal refused: agent {agent_id} already renewed on this session; reconnect with the new certificate"
            )));
        }
        let (certificate_pem, not_after) = self
            .control
            .pki()
            .sign_agent_csr(csr_pem, agent_id, self.cert_validity)
            .map_err(|e| ErrorCode::InvalidArgument.to_status(e.to_string()))?;
        let command = Command::RenewAgentCertificate {
            agent_id: agent_id.clone(),
            cert_not_after_ms: ms_of(not_after),
        };
        let request_id = format!("renew-{}", new_agent_id());
        self.control.write(agent_id, &request_id, command).await.map_err(|e| e.to_status())?;
        tracing::info!(%agent_id, "agent certificate renewed");
        Ok(wire::RenewResponse {
            certificate_pem,
            not_after: Some(dsops_proto::domain::timestamp_ms(ms_of(not_after))),
        })
    }
}
