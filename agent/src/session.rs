//! The agent's session with the control plane: one outbound bidirectional gRPC stream over
//! mTLS, to the leader.
//!
//! ```text
//!  connect(address) ── Hello{version, capabilities, jobs in flight} ──▶
//!                   ◀── Welcome | Redirect{leader}
//!                   ◀── Job ──▶ Executor ──▶ Receipt ──▶   (kept until acknowledged)
//!                   ◀── ReceiptAck
//!  every heartbeat: ── Heartbeat ──▶  (and Renew{csr} once the certificate is due)
//! ```
//!
//! A broken session is retried with capped exponential backoff and jitter, at the leader the
//! control plane named or else the next configured address. Receipts not yet acknowledged are
//! sent again on the next session: the control plane applies a receipt once, however often it
//! arrives. The transport (TLS, certificates) belongs to the host process, behind [`Link`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dsops_proto::domain::{Capabilities, Job, SignedReceipt, Step};
use dsops_proto::wire::agent as wire;
use dsops_proto::wire::agent::agent_service_client::AgentServiceClient;
use tokio::sync::{Semaphore, mpsc, watch};
use tonic::Code;
use tonic::transport::Channel;

use crate::executor::Executor;

/// What the session needs from the process that hosts it.
pub trait Link: Send + Sync + 'static {
    /// A channel to `address` presenting the agent's current certificate.
    fn channel(&self, address: &str) -> Result<Channel, String>;
    /// A CSR for a new key when the certificate should be renewed now, else `None`.
    fn renewal(&self) -> Option<String>;
    /// Keeps a renewed certificate (for the key of the last CSR [`Link::renewal`] gave).
    fn renewed(&self, certificate_pem: &str, not_after: SystemTime) -> Result<(), String>;
}

/// How the session behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Control-plane API addresses (`host:port`), tried in turn.
    pub servers: Vec<String>,
    /// What this agent declares it can do.
    pub capabilities: Capabilities,
    /// Its version.
    pub version: String,
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

/// Where the session stands, for the host process and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Not connected; why, if a session ended or was refused.
    Disconnected {
        /// The last failure.
        reason: String,
        /// Failed attempts in a row.
        failures: u32,
    },
    /// Welcomed by the leader at this address.
    Connected {
        /// The leader's API address.
        address: String,
        /// Sessions established so far (1 for the first).
        sessions: u64,
    },
}

/// How one session ended.
enum Ended {
    /// The control plane named the leader (or none yet).
    Redirect(Option<String>),
    /// Refused (revoked, not enrolled, bad certificate): retried at the longest delay.
    Refused(String),
    /// The connection failed or broke.
    Lost(String),
    /// The control plane found a message of this agent malformed or too large: the receipts
    /// waiting for an answer are dropped rather than sent again on every session.
    Malformed(String),
    /// The host asked to stop.
    Shutdown,
}

/// (run, generation, step, checked step, attempt): one job.
type JobKey = (String, u64, Step, Option<Step>, u32);

/// A receipt not yet acknowledged.
struct Pending {
    receipt: SignedReceipt,
    key: JobKey,
    sent: std::time::Instant,
}

/// What the agent knows of its jobs, under one lock so a job sent twice is judged once.
#[derive(Default)]
struct Book {
    /// Receipts not yet acknowledged, by (run, step): the control plane waits for one step of a
    /// run at a time, and an acknowledgement names the run and step.
    unacked: BTreeMap<(String, Step), Pending>,
    /// Jobs executing now.
    running: BTreeSet<JobKey>,
    /// Jobs whose receipts were acknowledged (the most recent [`ACKED_MEMORY`]): one sent again
    /// after that (a new leader's resend decided before the receipt committed) is not
    /// performed again.
    acked: BTreeSet<JobKey>,
    acked_order: std::collections::VecDeque<JobKey>,
}

/// State shared by the session loop and the job tasks.
#[derive(Default)]
struct Shared {
    book: Mutex<Book>,
    /// The current session's outbound queue.
    outbound: Mutex<Option<mpsc::Sender<wire::AgentMessage>>>,
}

/// How many acknowledged jobs the agent remembers.
const ACKED_MEMORY: usize = 4096;

impl Shared {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("job book lock")
    }

    fn acknowledge(&self, run_id: &str, step: Step) {
        let mut book = self.book();
        let Some(pending) = book.unacked.remove(&(run_id.to_owned(), step)) else { return };
        if book.acked.insert(pending.key.clone()) {
            book.acked_order.push_back(pending.key);
            if book.acked_order.len() > ACKED_MEMORY
                && let Some(old) = book.acked_order.pop_front()
            {
                book.acked.remove(&old);
            }
        }
    }
}

fn receipt_message(receipt: &SignedReceipt) -> wire::AgentMessage {
    wire::AgentMessage { kind: Some(wire::agent_message::Kind::Receipt(receipt.into())) }
}

/// Runs the agent's session until `shutdown` turns true. `state` reports progress.
pub async fn run(
    executor: Arc<Executor>,
    link: Arc<dyn Link>,
    options: SessionOptions,
    state: watch::Sender<SessionState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared::default());
    let limit = Arc::new(Semaphore::new(executor.config().max_concurrent_jobs.max(1)));
    let mut leader: Option<String> = None;
    let mut next = 0usize;
    let mut failures = 0u32;
    let mut redirects = 0u32;
    let mut sessions = 0u64;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let address = match leader.take() {
            Some(address) => address,
            None if options.servers.is_empty() => return,
            None => {
                next = next.wrapping_add(1);
                options.servers[(next - 1) % options.servers.len()].clone()
            }
        };
        let mut welcomed = false;
        let ended = one_session(
            &address,
            &executor,
            &link,
            &options,
            &shared,
            &limit,
            &mut shutdown,
            || {
                sessions += 1;
                welcomed = true;
                let _ = state.send(SessionState::Connected { address: address.clone(), sessions });
            },
        )
        .await;
        *shared.outbound.lock().expect("outbound lock") = None;
        if welcomed {
            failures = 0;
            redirects = 0;
        }
        let (reason, delay) = match ended {
            Ended::Shutdown => return,
            Ended::Redirect(Some(to)) => {
                tracing::info!(from = %address, to = %to, "redirected to the leader");
                leader = Some(to.clone());
                // Nodes that disagree about the leader (an election) must not make the agent
                // bounce between them in a tight loop: the first redirect is followed at once,
                // the next ones after a growing delay.
                redirects += 1;
                let delay =
                    if redirects <= 1 { Duration::ZERO } else { backoff(&options, redirects - 1) };
                (format!("redirected to {to}"), delay)
            }
            Ended::Redirect(None) => {
                // An election is under way: ask again soon (the first delay, with jitter).
                failures += 1;
                ("no leader known yet".to_owned(), backoff(&options, 1))
            }
            Ended::Refused(reason) => {
                failures += 1;
                tracing::error!(%address, %reason, "the control plane refused this agent");
                (reason, options.backoff_max)
            }
            Ended::Malformed(reason) => {
                failures += 1;
                let dropped = std::mem::take(&mut shared.book().unacked);
                tracing::error!(
                    %address,
                    %reason,
                    dropped = dropped.len(),
                    "the control plane refused a message of this agent; its unanswered receipts are dropped (their steps are resolved by a check)"
                );
                (reason, backoff(&options, failures))
            }
            Ended::Lost(reason) => {
                failures += 1;
                tracing::warn!(%address, %reason, "session lost; reconnecting");
                // Try the other addresses at once; back off once a whole round has failed.
                let servers = options.servers.len().max(1) as u32;
                let delay = if !failures.is_multiple_of(servers) {
                    Duration::from_millis(20)
                } else {
                    backoff(&options, failures / servers)
                };
                (reason, delay)
            }
        };
        let _ = state.send(SessionState::Disconnected { reason, failures });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Exponential backoff from `backoff_min`, capped at `backoff_max`, times a jitter in [0.5, 1].
fn backoff(options: &SessionOptions, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let base = options.backoff_min.saturating_mul(1 << exponent).min(options.backoff_max);
    let jitter = crate::secret::random_bytes::<2>().map_or(1000, |b| u16::from_le_bytes(b) % 501);
    base.mul_f64(0.5 + f64::from(jitter) / 1000.0)
}

/// Classifies a gRPC status that ended or refused a session.
fn ended_by(status: &tonic::Status) -> Ended {
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => {
            Ended::Refused(status.message().to_owned())
        }
        Code::InvalidArgument => Ended::Malformed(status.message().to_owned()),
        _ => Ended::Lost(format!("{}: {}", status.code(), status.message())),
    }
}

#[allow(clippy::too_many_arguments)]
async fn one_session(
    address: &str,
    executor: &Arc<Executor>,
    link: &Arc<dyn Link>,
    options: &SessionOptions,
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
    on_welcome: impl FnOnce(),
) -> Ended {
    let channel = match link.channel(address) {
        Ok(channel) => channel,
        Err(error) => return Ended::Lost(error),
    };
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = mpsc::channel::<wire::AgentMessage>(256);
    let in_flight: Vec<String> = {
        let book = shared.book();
        let ids: BTreeSet<String> = book.running.iter().map(|key| key.0.clone()).collect();
        ids.into_iter().collect()
    };
    let hello = wire::Hello {
        version: options.version.clone(),
        capabilities: Some((&options.capabilities).into()),
        jobs_in_flight: in_flight,
    };
    let _ =
        tx.send(wire::AgentMessage { kind: Some(wire::agent_message::Kind::Hello(hello)) }).await;
    let mut inbound = match client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return ended_by(&status),
    };
    let heartbeat = match inbound.message().await {
        Ok(Some(wire::ControlMessage { kind: Some(wire::control_message::Kind::Welcome(w)) })) => {
            Duration::from_millis(u64::from(w.heartbeat_interval_ms.max(100)))
        }
        Ok(Some(wire::ControlMessage { kind: Some(wire::control_message::Kind::Redirect(r)) })) => {
            return Ended::Redirect(Some(r.leader_address).filter(|a| !a.is_empty()));
        }
        Ok(_) => return Ended::Lost("the control plane did not welcome the session".to_owned()),
        Err(status) => return ended_by(&status),
    };
    on_welcome();
    *shared.outbound.lock().expect("outbound lock") = Some(tx.clone());
    // Receipts the last session did not see acknowledged.
    let pending: Vec<SignedReceipt> =
        shared.book().unacked.values().map(|p| p.receipt.clone()).collect();
    for receipt in &pending {
        let _ = tx.send(receipt_message(receipt)).await;
    }
    let mut ticks = tokio::time::interval(heartbeat);
    ticks.tick().await;
    let mut sequence = 0u64;
    let mut renewing = false;
    loop {
        tokio::select! {
            received = inbound.message() => match received {
                Ok(Some(message)) => match message.kind {
                    Some(wire::control_message::Kind::Job(job)) => match Job::try_from(job).map(|job| job.arrived(SystemTime::now())) {
                        Ok(job) => start_job(job, executor, shared, limit),
                        Err(error) => tracing::error!(%error, "the control plane sent a job this agent cannot read"),
                    },
                    Some(wire::control_message::Kind::ReceiptAck(ack)) => {
                        if let Ok(step) = Step::from_wire(ack.step, "step") {
                            shared.acknowledge(&ack.run_id, step);
                        }
                        if !ack.accepted {
                            tracing::warn!(run = %ack.run_id, reason = %ack.reason, "receipt refused");
                        }
                    }
                    Some(wire::control_message::Kind::Redirect(r)) => {
                        return Ended::Redirect(Some(r.leader_address).filter(|a| !a.is_empty()));
                    }
                    Some(wire::control_message::Kind::Renewed(renewed)) => {
                        renewing = false;
                        let not_after = renewed
                            .not_after
                            .and_then(|t| dsops_proto::domain::required_time(Some(t), "not_after").ok())
                            .unwrap_or(SystemTime::UNIX_EPOCH);
                        match link.renewed(&renewed.certificate_pem, not_after) {
                            Ok(()) => tracing::info!("certificate renewed"),
                            Err(error) => tracing::error!(%error, "cannot keep the renewed certificate"),
                        }
                    }
                    Some(wire::control_message::Kind::Delivery(delivery)) => {
                        let (executor, tx) = (executor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let result = crate::notify::perform(&executor, &delivery).await;
                            let kind = wire::agent_message::Kind::DeliveryResult(result);
                            let _ = tx.send(wire::AgentMessage { kind: Some(kind) }).await;
                        });
                    }
                    Some(wire::control_message::Kind::Preflight(request)) => {
                        let (executor, tx) = (executor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let result = crate::preflight::perform(&executor, &request).await;
                            let kind = wire::agent_message::Kind::PreflightResult(result);
                            let _ = tx.send(wire::AgentMessage { kind: Some(kind) }).await;
                        });
                    }
                    Some(wire::control_message::Kind::HealthCheck(check)) => {
                        let (executor, tx) = (executor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let result = crate::health::perform(&executor, &check).await;
                            let kind = wire::agent_message::Kind::HealthResult(result);
                            let _ = tx.send(wire::AgentMessage { kind: Some(kind) }).await;
                        });
                    }
                    Some(wire::control_message::Kind::Cancel(cancel)) => {
                        tracing::info!(run = %cancel.run_id, reason = %cancel.reason, "run cancelled");
                    }
                    Some(wire::control_message::Kind::Welcome(_)) | None => {}
                },
                Ok(None) => return Ended::Lost("the control plane closed the session".to_owned()),
                Err(status) => return ended_by(&status),
            },
            _ = ticks.tick() => {
                sequence += 1;
                let running = shared.book().running.len() as u32;
                let beat = wire::Heartbeat {
                    sequence,
                    sent_at: Some(dsops_proto::domain::wire_time(SystemTime::now())),
                    running_jobs: running,
                };
                if tx.send(wire::AgentMessage { kind: Some(wire::agent_message::Kind::Heartbeat(beat)) }).await.is_err() {
                    return Ended::Lost("the session's stream closed".to_owned());
                }
                // Receipts the control plane could not commit yet (no quorum for a moment):
                // send them again now and then; it applies each once.
                let stale: Vec<SignedReceipt> = {
                    let mut book = shared.book();
                    book.unacked
                        .values_mut()
                        .filter(|p| p.sent.elapsed() >= heartbeat * 2)
                        .map(|p| {
                            p.sent = std::time::Instant::now();
                            p.receipt.clone()
                        })
                        .collect()
                };
                for receipt in &stale {
                    let _ = tx.send(receipt_message(receipt)).await;
                }
                if !renewing && let Some(csr_pem) = link.renewal() {
                    renewing = true;
                    let renew = wire::RenewRequest { csr_pem };
                    let _ = tx.send(wire::AgentMessage { kind: Some(wire::agent_message::Kind::Renew(renew)) }).await;
                }
            }
            _ = shutdown.changed() => return Ended::Shutdown,
        }
    }
}

/// Runs a job in its own task (at most `max_concurrent_jobs` at once) and sends its receipt on
/// the session that is current when it finishes.
fn start_job(job: Job, executor: &Arc<Executor>, shared: &Arc<Shared>, limit: &Arc<Semaphore>) {
    let key: JobKey =
        (job.run_id.to_string(), job.generation.get(), job.step, job.checked_step, job.attempt);
    let slot = (key.0.clone(), key.2);
    let answer = {
        let mut book = shared.book();
        if book.acked.contains(&key) {
            return; // Its receipt was acknowledged: the control plane has moved on.
        }
        if book.running.contains(&key) {
            return; // Sent again while it runs: one execution is enough.
        }
        match book.unacked.get(&slot).filter(|p| p.key == key) {
            // Sent again after a reconnect and already done: its receipt is the answer.
            Some(pending) => Some(pending.receipt.clone()),
            None => {
                book.running.insert(key.clone());
                None
            }
        }
    };
    if let Some(receipt) = answer {
        let outbound = shared.outbound.lock().expect("outbound lock").clone();
        if let Some(tx) = outbound {
            tokio::spawn(async move {
                let _ = tx.send(receipt_message(&receipt)).await;
            });
        }
        return;
    }
    let (executor, shared, limit) = (executor.clone(), shared.clone(), limit.clone());
    tokio::spawn(async move {
        let Ok(_permit) = limit.acquire_owned().await else { return };
        let receipt = executor.execute(&job).await;
        {
            let mut book = shared.book();
            book.running.remove(&key);
            let sent = std::time::Instant::now();
            book.unacked.insert(slot, Pending { receipt: receipt.clone(), key, sent });
        }
        let outbound = shared.outbound.lock().expect("outbound lock").clone();
        if let Some(tx) = outbound {
            let _ = tx.send(receipt_message(&receipt)).await;
        }
    });
}
