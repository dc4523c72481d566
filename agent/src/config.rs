//! What the agent knows locally: its stores, the services it reaches and where their admin
//! credentials are. The control plane sends only names and references; everything here stays on
//! the agent's host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use dsops_proto::domain::StoreRef;

/// A secret store the agent can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The encrypted file store.
    File {
        /// Its directory of entry files.
        dir: PathBuf,
        /// Its key file.
        key_file: PathBuf,
    },
}

/// A rotation target the agent reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The catalog service type (`postgresql`, `mysql`, ...).
    pub service_type: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database (PostgreSQL: connect to it; MySQL: optional).
    pub database: Option<String>,
    /// Where the admin credential is: an entry with `user` and `password` fields.
    pub admin: StoreRef,
}

/// What the agent's owner allows it to do, whatever the control plane asks: a job outside it is
/// refused with a signed receipt. `None` allows everything the configuration names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentPolicy {
    /// Services (by name) it may change.
    pub services: Option<BTreeSet<String>>,
    /// Strategies it may run.
    pub strategies: Option<BTreeSet<String>>,
}

impl AgentPolicy {
    /// Why the policy refuses a step of `strategy` on `service`, if it does. Every step is
    /// judged, rollback and check included: a rollback may change a target too, and a run this
    /// agent refused never changed anything here, so there is nothing for it to undo.
    pub fn refusal(&self, strategy: &str, service: Option<&str>) -> Option<String> {
        if let Some(allowed) = &self.strategies
            && !allowed.contains(strategy)
        {
            return Some(format!("agent policy: strategy {strategy} is not allowed on this agent"));
        }
        if let (Some(allowed), Some(service)) = (&self.services, service)
            && !allowed.contains(service)
        {
            return Some(format!("agent policy: service {service} is not allowed on this agent"));
        }
        None
    }
}

/// The agent's local configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Stores by name.
    pub stores: BTreeMap<String, StoreSpec>,
    /// Services by name.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Script and webhook services by name: the only programs the agent runs and the only
    /// endpoints it sends values to.
    pub hooks: BTreeMap<String, crate::hook::HookSpec>,
    /// Limit on each call to a target.
    pub target_timeout: Duration,
    /// How long retire waits for the old user's sessions to end before disabling it anyway.
    pub session_wait: Duration,
    /// How many jobs run at once.
    pub max_concurrent_jobs: usize,
    /// Admin connections per target at most.
    pub max_target_connections: u32,
    /// What the agent's owner allows.
    pub policy: AgentPolicy,
}

impl AgentConfig {
    /// An empty configuration with default limits.
    pub fn new() -> AgentConfig {
        AgentConfig {
            stores: BTreeMap::new(),
            services: BTreeMap::new(),
            hooks: BTreeMap::new(),
            target_timeout: Duration::from_secs(15),
            session_wait: Duration::from_secs(30),
            max_concurrent_jobs: 32,
            max_target_connections: 8,
            policy: AgentPolicy::default(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig::new()
    }
}
