//! The agents connected to this node, and how jobs reach them. In-process agents (the embedded
//! default, tests) and remote sessions register the same way: a channel that carries jobs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dsops_proto::domain::Job;
use tokio::sync::{Notify, mpsc};

struct Connected {
    segment: String,
    session: u64,
    jobs: mpsc::UnboundedSender<Job>,
    connected_at_ms: u64,
}

/// The agents connected to this node.
#[derive(Clone, Default)]
pub struct AgentRegistry {
    agents: Arc<Mutex<BTreeMap<String, Connected>>>,
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
}

impl AgentRegistry {
    /// Registers a session of `agent_id`; a newer session replaces an older one. Returns the
    /// session number, for [`AgentRegistry::disconnect`].
    pub fn connect(&self, agent_id: &str, segment: &str, jobs: mpsc::UnboundedSender<Job>) -> u64 {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let connected = Connected {
            segment: segment.to_owned(),
            session,
            jobs,
            connected_at_ms: crate::node::now_ms(),
        };
        self.agents.lock().expect("registry lock").insert(agent_id.to_owned(), connected);
        self.wake.notify_one();
        session
    }

    /// Removes `agent_id`'s session `session` (a newer session stays).
    pub fn disconnect(&self, agent_id: &str, session: u64) {
        let mut agents = self.agents.lock().expect("registry lock");
        if agents.get(agent_id).is_some_and(|c| c.session == session) {
            agents.remove(agent_id);
        }
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

    /// Whether an agent of `segment` is connected (for status; unlike [`AgentRegistry::pick`]
    /// it does not move the round-robin).
    pub fn has_agent(&self, segment: &str) -> bool {
        let agents = self.agents.lock().expect("registry lock");
        agents.values().any(|c| c.segment == segment && !c.jobs.is_closed())
    }

    /// A connected agent of `segment`, round-robin.
    pub fn pick(&self, segment: &str) -> Option<String> {
        let agents = self.agents.lock().expect("registry lock");
        let live = || agents.iter().filter(|(_, c)| c.segment == segment && !c.jobs.is_closed());
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
