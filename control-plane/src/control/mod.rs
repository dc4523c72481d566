//! The control plane as the services (and the embedded default) use it: replicated writes,
//! linearizable reads, and who leads.

pub mod agents;
pub mod refusals;

pub use agents::{AgentRegistry, ConnectedAgent};
pub use refusals::RefusalTally;

use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::pki::ClusterPki;
use crate::raft::{NodeId, Proposal, StateMachineStore, TypeConfig};
use dsops_state::{Command, Outcome, Request, Response, State};

/// How many validated configurations a node keeps (each is ~5 KB per secret).
const CONFIG_CACHE: usize = 2;
/// The most requests in one raft entry.
const MAX_BATCH: usize = 512;
/// The most bytes (roughly) in one raft entry; a larger request goes alone.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// The largest single request the proposer puts in the log (a configuration larger than
/// [`dsops_state::CONFIG_PART_BYTES`] goes in parts): anything larger is refused before raft
/// sees it, so no entry can grow past what replicates within a raft call's deadline (openraft
/// 0.9 gives an AppendEntries one heartbeat interval).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// How long a proposal may take to commit before its requests are answered `unavailable` (the
/// caller retries with the same request id, so a late commit is not applied twice).
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Proposals in flight at once. One: while it is made durable and replicated, every request that
/// arrives meanwhile queues for the next, so a busy node writes fewer, larger entries (openraft
/// 0.9 appends one entry at a time anyway, after the previous one is flushed). Measured against
/// two: 3-node writes/s at 64 clients 5,680 → 8,030, and the cluster rotation bench's CPU per
/// rotation 6.7 → 5.8 ms.
const MAX_IN_FLIGHT: usize = 1;

/// A request waiting for a proposal.
struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<Response, WriteError>>,
}

/// Why a write or a current read did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader; retry at the leader with the same request id.
    #[error("not the leader{}", leader.as_ref().map(|l| format!("; the leader is at {l}")).unwrap_or_default())]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// The state machine refused the command (committed, nothing changed).
    #[error("{message}")]
    Rejected {
        /// Which class of refusal.
        code: dsops_proto::ErrorCode,
        /// Why.
        message: String,
    },
    /// Raft cannot serve (shutting down, membership change in progress, ...).
    #[error("{0}")]
    Unavailable(String),
}

impl WriteError {
    /// The gRPC status for this error.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            WriteError::NotLeader { leader } => {
                dsops_proto::error::not_leader_status(leader.as_deref())
            }
            WriteError::Rejected { code, message } => code.to_status(message.clone()),
            WriteError::Unavailable(message) => {
                dsops_proto::ErrorCode::Unavailable.to_status(message.clone())
            }
        }
    }
}

struct Inner {
    node_id: NodeId,
    raft: Raft<TypeConfig>,
    state: StateMachineStore,
    /// The cluster's CAs; replaced when this node, made a voter, receives the issuing keys.
    pki: std::sync::RwLock<Arc<ClusterPki>>,
    /// SHA-256 of the peer CA certificate, as join tokens carry it.
    peer_fingerprint: String,
    /// Requests for the batching proposer.
    proposals: mpsc::UnboundedSender<Pending>,
    /// Agents connected to this node.
    agents: AgentRegistry,
    /// The stored configurations validated here, by version, most recently used first (at
    /// most [`CONFIG_CACHE`]: the current one, and one a report asked for).
    config_cache: std::sync::Mutex<Vec<(u64, Arc<dsops_config::config::Loaded>)>>,
    /// Held while a configuration is validated into the cache: one load at a time.
    config_loading: Arc<tokio::sync::Mutex<()>>,
    /// Refusals counted for the next audit summary.
    refusals: RefusalTally,
    /// When this node last served each operator (by certificate name), ms since the epoch.
    /// Only names from certificates of the cluster's operator CA get here.
    operators_seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Leader changes this process has seen (for `/metrics`).
    leader_changes: Arc<std::sync::atomic::AtomicU64>,
    /// The leader this node knows, changed only when it changes (sessions follow it).
    leader_watch: tokio::sync::watch::Sender<Option<NodeId>>,
    /// How far this node's clock is stepped from the system clock, ms ([`ControlPlane::step_clock`]).
    clock_step_ms: std::sync::atomic::AtomicI64,
}

/// A handle on one node's control plane. Cheap to clone.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Wraps a running raft node.
    pub fn new(
        node_id: NodeId,
        raft: Raft<TypeConfig>,
        state: StateMachineStore,
        pki: ClusterPki,
    ) -> ControlPlane {
        let peer_fingerprint =
            pki.peer.cert_der().map(|der| dsops_identity::fingerprint(&der)).unwrap_or_default();
        let (proposals, queue) = mpsc::unbounded_channel();
        tokio::spawn(propose(raft.clone(), queue));
        let leader_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let leader_watch = tokio::sync::watch::Sender::new(None);
        tokio::spawn(count_leader_changes(
            raft.clone(),
            leader_changes.clone(),
            leader_watch.clone(),
        ));
        ControlPlane {
            inner: Arc::new(Inner {
                node_id,
                raft,
                state,
                pki: std::sync::RwLock::new(Arc::new(pki)),
                peer_fingerprint,
                proposals,
                agents: AgentRegistry::default(),
                config_cache: std::sync::Mutex::new(Vec::new()),
                config_loading: Arc::new(tokio::sync::Mutex::new(())),
                refusals: RefusalTally::default(),
                operators_seen: Default::default(),
                leader_changes,
                leader_watch,
                clock_step_ms: std::sync::atomic::AtomicI64::new(0),
            }),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// This node's clock, ms since the epoch: the system clock, stepped by [`Self::step_clock`].
    /// What the node proposes as a command's time and what its leader-side loops (scheduler,
    /// dispatcher, approvals, promotions, reminders) compare deadlines with.
    pub fn now_ms(&self) -> u64 {
        let step = self.inner.clock_step_ms.load(std::sync::atomic::Ordering::Relaxed);
        dsops_proto::now_ms().saturating_add_signed(step)
    }

    /// Steps this node's clock by `delta_ms` (negative: back), as an NTP step or a bad
    /// hardware clock would, until the node restarts. Fault-injection runs use it to check that
    /// a node whose clock jumped loses no credential and leaves no run stuck.
    pub fn step_clock(&self, delta_ms: i64) {
        self.inner.clock_step_ms.fetch_add(delta_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The raft handle.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }

    /// The state machine.
    pub fn state(&self) -> &StateMachineStore {
        &self.inner.state
    }

    /// How many times this process saw the leader change (a first leader counts).
    pub fn leader_changes(&self) -> u64 {
        self.inner.leader_changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The agents connected to this node.
    pub fn agents(&self) -> &AgentRegistry {
        &self.inner.agents
    }

    /// Refusals counted here for the next audit summary ([`RefusalTally`]).
    pub fn refusals(&self) -> &RefusalTally {
        &self.inner.refusals
    }

    /// Notes that this node served operator `name` now.
    pub fn operator_seen(&self, name: &str) {
        let now = dsops_proto::now_ms();
        let mut seen = self.inner.operators_seen.lock().expect("operators_seen lock");
        match seen.get_mut(name) {
            Some(at) => *at = now,
            None => {
                seen.insert(name.to_owned(), now);
            }
        }
    }

    /// When this node last served operator `name`.
    pub fn operator_last_seen(&self, name: &str) -> Option<u64> {
        self.inner.operators_seen.lock().expect("operators_seen lock").get(name).copied()
    }

    /// The validated configuration of stored version `version`, if this node has it.
    pub(crate) fn cached_config(&self, version: u64) -> Option<Arc<dsops_config::config::Loaded>> {
        let mut cache = self.inner.config_cache.lock().expect("config cache lock");
        let at = cache.iter().position(|(v, _)| *v == version)?;
        let hit = cache.remove(at);
        let loaded = hit.1.clone();
        cache.insert(0, hit);
        Some(loaded)
    }

    /// Waits until no other task is validating a configuration into the cache. A 100,000-secret
    /// configuration takes seconds of CPU and hundreds of MB to validate: callers that miss
    /// the cache at once wait for one load instead of each running their own. The guard is
    /// owned, so the blocking load holds it: a caller that gave up (a dropped request) does not
    /// let the next load start beside the one still running.
    pub(crate) async fn config_loading(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.inner.config_loading.clone().lock_owned().await
    }

    /// Remembers the validated configuration of stored version `version`.
    pub(crate) fn cache_config(&self, version: u64, loaded: Arc<dsops_config::config::Loaded>) {
        let mut cache = self.inner.config_cache.lock().expect("config cache lock");
        cache.retain(|(v, _)| *v != version);
        cache.insert(0, (version, loaded));
        cache.truncate(CONFIG_CACHE);
    }

    /// The cluster's CAs.
    pub fn pki(&self) -> Arc<ClusterPki> {
        self.inner.pki.read().expect("pki lock").clone()
    }

    /// Replaces the cluster's CAs (this node received the issuing keys).
    pub(crate) fn set_pki(&self, pki: ClusterPki) {
        *self.inner.pki.write().expect("pki lock") = Arc::new(pki);
    }

    /// SHA-256 of the peer CA certificate (what join tokens pin).
    pub fn peer_fingerprint(&self) -> &str {
        &self.inner.peer_fingerprint
    }

    /// The latest raft metrics.
    pub fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Whether this node leads now (read without copying the metrics: sessions ask often).
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.node_id)
    }

    /// Changes when the leader this node knows changes (unlike [`Self::metrics`], which changes
    /// on every replication step): what a long-lived session waits on to follow the leader.
    pub fn leader_changes_watch(&self) -> tokio::sync::watch::Receiver<Option<NodeId>> {
        self.inner.leader_watch.subscribe()
    }

    /// A notice that changes after something that may end an agent's session was applied
    /// ([`StateMachineStore::revocations`]).
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.state.revocations()
    }

    /// The leader's id and address, if known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.metrics();
        let leader = metrics.current_leader?;
        let address =
            metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())?;
        Some((leader, address))
    }

    fn not_leader(&self, forward: Option<&ForwardToLeader<NodeId, BasicNode>>) -> WriteError {
        let leader = forward
            .and_then(|f| f.leader_node.as_ref().map(|n| n.addr.clone()))
            .or_else(|| self.leader().map(|(_, a)| a));
        WriteError::NotLeader { leader }
    }

    /// Proposes a command and waits for it to be applied. A refused command is returned as
    /// [`WriteError::Rejected`]; a retried request id returns the first response. Concurrent
    /// writes are batched into one raft entry.
    pub async fn write(
        &self,
        actor: &str,
        request_id: &str,
        command: Command,
    ) -> Result<Response, WriteError> {
        let size = command.approx_size() + request_id.len() + actor.len();
        if size > MAX_REQUEST_BYTES {
            return Err(WriteError::Rejected {
                code: dsops_proto::ErrorCode::InvalidArgument,
                message: format!(
                    "{} is about {size} bytes; the replicated log takes at most {MAX_REQUEST_BYTES} per request",
                    command.name()
                ),
            });
        }
        let request = Request {
            request_id: request_id.to_owned(),
            actor: actor.to_owned(),
            proposed_at_ms: self.now_ms(),
            command,
        };
        // A span only inside a traced request (an admin call, a dispatch): the leader's own
        // periodic writes start no trace of their own.
        let span = if tracing::Span::current().is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!("raft.write", command = request.command.name())
        };
        let (reply, response) = oneshot::channel();
        self.inner
            .proposals
            .send(Pending { request, reply })
            .map_err(|_| WriteError::Unavailable("the node is shutting down".into()))?;
        let response = tracing::Instrument::instrument(response, span)
            .await
            .map_err(|_| WriteError::Unavailable("the node is shutting down".into()))??;
        match &response.outcome {
            Outcome::Rejected { code, message } => {
                Err(WriteError::Rejected { code: *code, message: message.clone() })
            }
            _ => Ok(response),
        }
    }

    /// Reads the state after making sure it is current: this node is the leader, and it has
    /// applied every entry its log held when the read began (so every write acknowledged
    /// before the read is in it, even right after a leader restarted and resumed its term with a
    /// commit index behind what it had acknowledged, which openraft 0.9 allows).
    pub async fn read_current<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, WriteError> {
        let last = self.inner.raft.metrics().borrow().last_log_index;
        match self.inner.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                forward,
            ))) => {
                return Err(self.not_leader(Some(&forward)));
            }
            Err(error) => return Err(WriteError::Unavailable(error.to_string())),
        }
        self.inner
            .raft
            .wait(Some(COMMIT_TIMEOUT))
            .applied_index_at_least(last, "a current read")
            .await
            .map_err(|e| {
                WriteError::Unavailable(format!("the leader could not apply its log: {e}"))
            })?;
        Ok(self.inner.state.read(f).await)
    }

    /// The audit history this node keeps, after sequence number `after` (0: from its start),
    /// at most `limit` events, with the checkpoint it verifies from.
    pub fn audit_history(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<crate::raft::AuditHistory, String> {
        self.inner.state.audit(after, limit).map_err(|e| format!("reading the audit history: {e}"))
    }

    /// The first audit event this node keeps at or after `from_ms` (log time), if any: found
    /// by reading the history page by page.
    pub fn audit_seq_at(&self, from_ms: u64) -> Result<Option<u64>, String> {
        const PAGE: usize = 10_000;
        let mut after = 0;
        loop {
            let page = self.audit_history(after, PAGE)?;
            if let Some(event) = page.events.iter().find(|e| e.at_ms >= from_ms) {
                return Ok(Some(event.seq));
            }
            match page.events.last() {
                Some(last) if page.events.len() == PAGE => after = last.seq,
                _ => return Ok(None),
            }
        }
    }

    /// Reads the local state, which may lag the leader (for status displays).
    pub async fn read_local<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        self.inner.state.read(f).await
    }
}

/// The batching proposer: every request queued when a proposal slot frees up goes into one raft
/// entry. Runs until every handle on the control plane is gone.
async fn propose(raft: Raft<TypeConfig>, mut queue: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        // Waiting for a slot lets more requests queue up behind `first`.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut bytes = first.request.command.approx_size();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.request.command.approx_size();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.request, p.reply)).unzip();
            let written = match tokio::time::timeout(
                COMMIT_TIMEOUT,
                raft.client_write(Proposal(requests)),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => {
                    let error = WriteError::Unavailable(format!(
                        "the write was not committed within {}s (is a majority of voters reachable?); retry with the same request id",
                        COMMIT_TIMEOUT.as_secs()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                    drop(slot);
                    return;
                }
            };
            match written {
                Ok(written) => {
                    for (reply, response) in replies.into_iter().zip(written.data.0) {
                        let _ = reply.send(Ok(response));
                    }
                }
                Err(error) => {
                    let error = match error {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                            WriteError::NotLeader { leader: forward.leader_node.map(|n| n.addr) }
                        }
                        other => WriteError::Unavailable(other.to_string()),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// Counts changes of the known leader until the node shuts down.
async fn count_leader_changes(
    raft: Raft<TypeConfig>,
    count: Arc<std::sync::atomic::AtomicU64>,
    watch: tokio::sync::watch::Sender<Option<NodeId>>,
) {
    let mut metrics = raft.metrics();
    let mut leader = None;
    loop {
        let now = metrics.borrow_and_update().current_leader;
        if now.is_some() && now != leader {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if now != leader {
            watch.send_replace(now);
        }
        leader = now;
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
