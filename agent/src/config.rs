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
    /// AWS Secrets Manager.
    AwsSecretsManager(crate::store::SecretsManagerOptions),
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
    /// PostgreSQL `sslmode` / MySQL `tls` as configured.
    pub tls_mode: Option<String>,
    /// The CA file that signs the server's certificate, if not a public CA.
    pub ca_file: Option<std::path::PathBuf>,
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
        match (&self.services, service) {
            (Some(allowed), Some(service)) if !allowed.contains(service) => {
                Some(format!("agent policy: service {service} is not allowed on this agent"))
            }
            // An agent limited to some services changes nothing else, store-only runs included.
            (Some(_), None) => Some(
                "agent policy: this agent is limited to named services, and this job has none"
                    .to_owned(),
            ),
            _ => None,
        }
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
    /// Certificate services by name (`internal-ca-certificate`): the CAs the agent issues from.
    pub certificates: BTreeMap<String, crate::certificate::CertificateSpec>,
    /// Services whose API keys the generic HTTP adapter rotates, by name.
    pub http: BTreeMap<String, crate::http_keys::HttpService>,
    /// AWS IAM services by name: whose users' access keys the agent rotates.
    pub aws: BTreeMap<String, crate::aws::AwsSpec>,
    /// Services the agent cannot use as configured, with the reason (a job for one is refused).
    pub unusable: BTreeMap<String, String>,
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
    /// The store entries that are secrets to rotate, by (store, entry path, field), each with
    /// the service it rotates against (`None`: an application secret with no target). A job for
    /// any other entry, or for a listed one against another service, is refused.
    pub secrets: BTreeMap<(String, String, String), Option<String>>,
}

/// The field a store reference means when it names none (as `dsops get` reads it).
pub const DEFAULT_FIELD: &str = dsops_proto::domain::WHOLE_VALUE_FIELD;

impl AgentConfig {
    /// Registers `store` as a secret rotated against `service`.
    pub fn add_secret(&mut self, store: &StoreRef, service: Option<&str>) {
        let field = store.value_field().to_owned();
        self.secrets
            .insert((store.store.clone(), store.path.clone(), field), service.map(str::to_owned));
    }

    /// Why a job that touches `store` against `service` must be refused, judged from this
    /// configuration alone: the entry holds one of the agent's own credentials (a service's
    /// admin credential, a webhook's signing key), is not a configured secret, or is the secret
    /// of another service. The control plane sends references; the agent decides what they may
    /// reach.
    pub fn entry_refusal(&self, store: &StoreRef, service: Option<&str>) -> Option<String> {
        let entry = (store.store.as_str(), store.path.as_str());
        let own =
            self.services
                .iter()
                .map(|(name, spec)| (name, &spec.admin, "admin credential"))
                .chain(self.hooks.iter().filter_map(|(name, hook)| match hook {
                    crate::hook::HookSpec::Webhook(webhook) => {
                        webhook.auth.as_ref().map(|auth| (name, auth, "request-signing key"))
                    }
                    crate::hook::HookSpec::Script(_) => None,
                }))
                .chain(self.certificates.iter().map(|(name, spec)| {
                    (name, spec.issuer.credential(), "issuing CA or ACME account")
                }))
                .find(|(_, held, _)| (held.store.as_str(), held.path.as_str()) == entry);
        if let Some((name, _, what)) = own {
            return Some(format!(
                "store://{}/{} holds the {what} of service {name}; it is never a rotation target",
                entry.0, entry.1
            ));
        }
        let field = store.value_field().to_owned();
        let key = (store.store.clone(), store.path.clone(), field);
        match self.secrets.get(&key) {
            None => Some(format!(
                "{store} is not a secret in this agent's configuration; it rotates only the entries its configuration names"
            )),
            Some(configured) if configured.as_deref() != service => Some(format!(
                "{store} is configured to rotate against {}, not {}",
                configured
                    .as_deref()
                    .map_or_else(|| "no service".to_owned(), |s| format!("service {s}")),
                service.map_or_else(|| "no service".to_owned(), |s| format!("service {s}")),
            )),
            Some(_) => None,
        }
    }
}

impl AgentConfig {
    /// An empty configuration with default limits.
    pub fn new() -> AgentConfig {
        AgentConfig {
            stores: BTreeMap::new(),
            services: BTreeMap::new(),
            hooks: BTreeMap::new(),
            certificates: BTreeMap::new(),
            unusable: BTreeMap::new(),
            aws: BTreeMap::new(),
            http: BTreeMap::new(),
            target_timeout: Duration::from_secs(15),
            session_wait: Duration::from_secs(30),
            max_concurrent_jobs: 32,
            max_target_connections: 8,
            policy: AgentPolicy::default(),
            secrets: BTreeMap::new(),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig::new()
    }
}
