//! The agents connected to this node, and how jobs reach them. In-process agents (the embedded
//! default, tests) and remote sessions register the same way: a channel that carries jobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dsops_proto::domain::{Capabilities, Job, ServiceRef, StoreRef};
use tokio::sync::{Notify, mpsc};

use dsops_state::{RunSpec, StepKind};

struct Connected {
    segment: String,
    session: u64,
    jobs: mpsc::UnboundedSender<Job>,
    connected_at_ms: u64,
    /// What a remote agent declared; `None` for an in-process agent, which has everything the
    /// configuration names.
    capabilities: Option<Capabilities>,
    version: String,
    last_heartbeat_ms: u64,
    /// Notified to end a remote session (revocation).
    close: Arc<Notify>,
}

/// A remote agent's session, as it registers.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The agent (from its certificate).
    pub agent_id: String,
    /// Its segment (from the replicated state).
    pub segment: String,
    /// Its version.
    pub version: String,
    /// What it declared it can do.
    pub capabilities: Capabilities,
}

/// What a run needs of an agent besides its segment: the store and service it names (parsed
/// once per question, not once per agent asked).
struct Needs<'a> {
    segment: &'a str,
    store: Option<String>,
    service: Option<String>,
}

impl<'a> Needs<'a> {
    fn of(spec: &'a RunSpec) -> Needs<'a> {
        Needs {
            segment: &spec.segment,
            store: StoreRef::parse(&spec.store_ref).ok().map(|r| r.store),
            service: spec
                .service_ref
                .as_deref()
                .and_then(|r| ServiceRef::parse(r).ok())
                .map(|r| r.service),
        }
    }

    /// Whether `capabilities` cover it (an unparsable store reference is covered by nobody).
    fn covered_by(&self, capabilities: &Capabilities) -> bool {
        self.store.as_ref().is_some_and(|s| capabilities.stores.contains(s))
            && self.service.as_ref().is_none_or(|s| capabilities.services.contains(s))
    }
}

/// Where a session takes deliveries: its number, segment and queue.
type DeliveryQueue = (u64, String, mpsc::UnboundedSender<Task>);

/// Work besides steps that goes to any agent of a segment: a notification delivery or a
/// health-check probe.
pub type Task = dsops_proto::wire::agent::control_message::Kind;

/// Where a preflight's answer goes.
type PreflightWait = tokio::sync::oneshot::Sender<dsops_proto::wire::agent::PreflightResult>;

/// A dispatched step as sent: (run, attempt, step).
pub(crate) type StepKey = (String, u32, StepKind);

/// The session each dispatched step was last sent on by this node.
type Sent = HashMap<StepKey, u64>;

/// The agents connected to this node.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: Arc<Mutex<BTreeMap<String, Connected>>>,
    /// Remote sessions that take notification deliveries: agent id → (session, segment, queue).
    deliveries: Arc<Mutex<BTreeMap<String, DeliveryQueue>>>,
    sent: Arc<Mutex<Sent>>,
    /// Preflights sent from here, waiting for their agent's answer, by id.
    preflights: Arc<Mutex<HashMap<String, PreflightWait>>>,
    sessions: Arc<AtomicU64>,
    next: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for AgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let agents =
            self.agents.lock().map(|a| a.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        f.debug_struct("AgentRegistry").field("agents", &agents).finish()
    }
}

/// A connected agent, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedAgent {
    /// Its id.
    pub agent_id: String,
    /// Its segment.
    pub segment: String,
    /// When its session started, ms since the epoch.
    pub connected_at_ms: u64,
    /// What it declared (`None`: in-process).
    pub capabilities: Option<Capabilities>,
    /// Its version (empty: in-process).
    pub version: String,
    /// Its last heartbeat, ms since the epoch.
    pub last_heartbeat_ms: u64,
}

impl AgentRegistry {
    /// Registers an in-process session of `agent_id`; a newer session replaces an older one.
    /// Returns the session number, for [`AgentRegistry::disconnect`].
    pub fn connect(&self, agent_id: &str, segment: &str, jobs: mpsc::UnboundedSender<Job>) -> u64 {
        self.insert(agent_id, segment, jobs, None, String::new()).0
    }

    /// Registers a remote session. Returns the session number and what ends it early
    /// ([`AgentRegistry::close`]).
    pub fn connect_session(
        &self,
        info: SessionInfo,
        jobs: mpsc::UnboundedSender<Job>,
    ) -> (u64, Arc<Notify>) {
        self.insert(&info.agent_id, &info.segment, jobs, Some(info.capabilities), info.version)
    }

    fn insert(
        &self,
        agent_id: &str,
        segment: &str,
        jobs: mpsc::UnboundedSender<Job>,
        capabilities: Option<Capabilities>,
        version: String,
    ) -> (u64, Arc<Notify>) {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let now = dsops_proto::now_ms();
        let close = Arc::new(Notify::new());
        let connected = Connected {
            segment: segment.to_owned(),
            session,
            jobs,
            connected_at_ms: now,
            capabilities,
            version,
            last_heartbeat_ms: now,
            close: close.clone(),
        };
        let replaced =
            self.agents.lock().expect("registry lock").insert(agent_id.to_owned(), connected);
        if let Some(old) = replaced {
            old.close.notify_one();
        }
        self.wake.notify_one();
        (session, close)
    }

    /// Records a heartbeat of `agent_id`'s session `session`.
    pub fn heartbeat(&self, agent_id: &str, session: u64) {
        let mut agents = self.agents.lock().expect("registry lock");
        if let Some(c) = agents.get_mut(agent_id).filter(|c| c.session == session) {
            c.last_heartbeat_ms = dsops_proto::now_ms();
        }
    }

    /// Ends `agent_id`'s session here, if any. Returns whether there was one.
    pub fn close(&self, agent_id: &str) -> bool {
        let removed = self.agents.lock().expect("registry lock").remove(agent_id);
        removed.map(|c| c.close.notify_one()).is_some()
    }

    /// Removes `agent_id`'s session `session` (a newer session stays).
    pub fn disconnect(&self, agent_id: &str, session: u64) {
        let mut agents = self.agents.lock().expect("registry lock");
        if agents.get(agent_id).is_some_and(|c| c.session == session) {
            agents.remove(agent_id);
        }
        let mut deliveries = self.deliveries.lock().expect("deliveries lock");
        if deliveries.get(agent_id).is_some_and(|(s, _, _)| *s == session) {
            deliveries.remove(agent_id);
        }
    }

    /// Lets session `session` of `agent_id` (in `segment`) take notification deliveries and
    /// health-check probes.
    pub fn take_deliveries(
        &self,
        agent_id: &str,
        session: u64,
        segment: &str,
        queue: mpsc::UnboundedSender<Task>,
    ) {
        self.deliveries
            .lock()
            .expect("deliveries lock")
            .insert(agent_id.to_owned(), (session, segment.to_owned(), queue));
    }

    /// Sends a delivery to an agent of `segment` (round robin); the agent, or `None` if no
    /// agent of the segment takes deliveries here.
    pub fn send_delivery(
        &self,
        segment: &str,
        delivery: dsops_proto::wire::agent::Delivery,
    ) -> Option<String> {
        self.send_task(segment, Task::Delivery(delivery))
    }

    /// Sends a health-check probe to an agent of `segment` (round robin); the agent, or `None`
    /// if none of the segment is connected here.
    pub fn send_health(
        &self,
        segment: &str,
        check: dsops_proto::wire::agent::HealthCheck,
    ) -> Option<String> {
        self.send_task(segment, Task::HealthCheck(check))
    }

    /// Sends a preflight to an agent of `segment`: the agent, and where its answer arrives;
    /// `None` if none of the segment is connected here.
    pub fn send_preflight(
        &self,
        segment: &str,
        request: dsops_proto::wire::agent::Preflight,
    ) -> Option<(String, tokio::sync::oneshot::Receiver<dsops_proto::wire::agent::PreflightResult>)>
    {
        let (answer, wait) = tokio::sync::oneshot::channel();
        let id = request.id.clone();
        self.preflights.lock().expect("preflights lock").insert(id.clone(), answer);
        match self.send_task(segment, Task::Preflight(request)) {
            Some(agent) => Some((agent, wait)),
            None => {
                self.preflights.lock().expect("preflights lock").remove(&id);
                None
            }
        }
    }

    /// An agent answered a preflight (ignored unless one with that id waits here).
    pub fn preflight_answered(&self, result: dsops_proto::wire::agent::PreflightResult) {
        let waiting = self.preflights.lock().expect("preflights lock").remove(&result.id);
        if let Some(answer) = waiting {
            let _ = answer.send(result);
        }
    }

    /// Forgets a preflight that was not answered in time.
    pub fn preflight_given_up(&self, id: &str) {
        self.preflights.lock().expect("preflights lock").remove(id);
    }

    fn send_task(&self, segment: &str, task: Task) -> Option<String> {
        let deliveries = self.deliveries.lock().expect("deliveries lock");
        let live: Vec<(&String, &DeliveryQueue)> = deliveries
            .iter()
            .filter(|(_, (_, s, queue))| s == segment && !queue.is_closed())
            .collect();
        if live.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let (agent_id, (_, _, queue)) = live[n % live.len()];
        queue.send(task).ok().map(|()| agent_id.clone())
    }

    /// Whether an agent of `segment` takes deliveries here.
    pub fn takes_deliveries(&self, segment: &str) -> bool {
        let deliveries = self.deliveries.lock().expect("deliveries lock");
        deliveries.values().any(|(_, s, queue)| s == segment && !queue.is_closed())
    }

    /// The session number of `agent_id`'s live session here, if it is connected.
    pub fn session_of(&self, agent_id: &str) -> Option<u64> {
        let agents = self.agents.lock().expect("registry lock");
        agents.get(agent_id).filter(|c| !c.jobs.is_closed()).map(|c| c.session)
    }

    /// Changes whenever an agent session starts.
    pub fn epoch(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Whether an agent that can do a run of `spec` is connected (for status; unlike
    /// [`AgentRegistry::pick`] it does not move the round-robin).
    pub fn has_agent(&self, spec: &RunSpec) -> bool {
        let agents = self.agents.lock().expect("registry lock");
        let needs = Needs::of(spec);
        agents.values().any(|c| Self::can_do(c, &needs))
    }

    fn can_do(c: &Connected, needs: &Needs<'_>) -> bool {
        c.segment == needs.segment
            && !c.jobs.is_closed()
            && c.capabilities.as_ref().is_none_or(|caps| needs.covered_by(caps))
    }

    /// A connected agent of the run's segment that can do it, round-robin.
    pub fn pick(&self, spec: &RunSpec) -> Option<String> {
        let agents = self.agents.lock().expect("registry lock");
        let needs = Needs::of(spec);
        let live = || agents.iter().filter(|(_, c)| Self::can_do(c, &needs));
        let count = live().count();
        if count == 0 {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        live().nth(n % count).map(|(id, _)| id.clone())
    }

    /// Sends a job; the session it went to, or `None` if the agent is not connected (any more).
    pub fn send(&self, agent_id: &str, job: Job) -> Option<u64> {
        let agents = self.agents.lock().expect("registry lock");
        agents.get(agent_id).filter(|c| c.jobs.send(job).is_ok()).map(|c| c.session)
    }

    /// Sends the job of a dispatched step unless it already went out on the agent's current
    /// session (the dispatcher, a resend and a receipt's chained dispatch may all try), and
    /// records the session it went on. Returns that session, or `None` if the agent is not
    /// connected or the job was sent before.
    pub(crate) fn send_step(&self, agent_id: &str, key: StepKey, job: Job) -> Option<u64> {
        let mut sent = self.sent.lock().expect("sent lock");
        let session = self.session_of(agent_id)?;
        if sent.get(&key) == Some(&session) {
            return None;
        }
        let session = self.send(agent_id, job)?;
        sent.insert(key, session);
        Some(session)
    }

    /// The session a dispatched step was last sent on, for the dispatcher's resend scan.
    pub(crate) fn sent_on(&self, key: &StepKey) -> Option<u64> {
        self.sent.lock().expect("sent lock").get(key).copied()
    }

    /// Keeps what was sent only for the runs `keep` names (those not ended), so the record
    /// stays as small as the work in flight.
    pub(crate) fn retain_sent(&self, keep: impl Fn(&str) -> bool) {
        self.sent.lock().expect("sent lock").retain(|(run_id, _, _), _| keep(run_id));
    }

    /// Forgets what was sent (this node stopped leading: a new term resends from the state).
    pub(crate) fn forget_sent(&self) {
        self.sent.lock().expect("sent lock").clear();
    }

    /// Every connected agent.
    pub fn connected(&self) -> Vec<ConnectedAgent> {
        let agents = self.agents.lock().expect("registry lock");
        agents
            .iter()
            .filter(|(_, c)| !c.jobs.is_closed())
            .map(|(id, c)| ConnectedAgent {
                agent_id: id.clone(),
                segment: c.segment.clone(),
                connected_at_ms: c.connected_at_ms,
                capabilities: c.capabilities.clone(),
                version: c.version.clone(),
                last_heartbeat_ms: c.last_heartbeat_ms,
            })
            .collect()
    }

    /// Wakes the dispatcher (a receipt was committed, an agent connected).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}
