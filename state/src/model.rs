use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::runs::{AgentRecord, Run, SecretRecord};
use super::{AuditLog, ConfigChange, Dedup, NodeRole};

/// How many configuration versions are kept.
pub const CONFIG_HISTORY: usize = 50;
/// How many bytes of configuration history (documents and fingerprints, every version kept) a
/// node proposes to keep: a few versions of a 100,000-secret configuration, 50 of a small one.
pub const CONFIG_HISTORY_BYTES: u64 = 64 << 20;

/// A stored configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfig {
    /// 1, 2, 3, ...
    pub version: u64,
    /// The dsops.yaml text.
    pub config_yaml: String,
    /// Its file name.
    pub config_path: String,
    /// Catalog documents by relative path.
    pub catalog_files: BTreeMap<String, String>,
    /// Content hash per item.
    pub fingerprints: BTreeMap<String, String>,
    /// What changed from the previous version.
    pub changes: Vec<ConfigChange>,
    /// When, ms since the epoch.
    pub applied_at_ms: u64,
    /// Who.
    pub applied_by: String,
    /// The log index that stored it.
    pub index: u64,
}

impl StoredConfig {
    /// The bytes its documents, fingerprints and change list take, which bound the kept
    /// history ([`CONFIG_HISTORY_BYTES`]).
    pub fn bytes(&self) -> u64 {
        let catalog: usize = self.catalog_files.iter().map(|(k, v)| k.len() + v.len()).sum();
        let fingerprints: usize = self.fingerprints.iter().map(|(k, v)| k.len() + v.len()).sum();
        let changes: usize = self.changes.iter().map(|c| c.action.len() + c.path.len()).sum();
        (self.config_yaml.len() + catalog + fingerprints + changes) as u64
    }
}

/// A control-plane node as recorded in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Raft node id.
    pub node_id: u64,
    /// `host:port`.
    pub address: String,
    /// Voter or learner.
    pub role: NodeRole,
    /// When it joined, ms since the epoch.
    pub joined_at_ms: u64,
}

/// A join token (only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// Expiry, ms since the epoch.
    pub expires_at_ms: u64,
    /// Set once used: the node id it admitted.
    pub used_by: Option<u64>,
}

/// An operator and its roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Its roles (empty: it may do nothing).
    pub grants: std::collections::BTreeSet<dsops_proto::domain::RoleGrant>,
    /// When it was first given a role, ms since the epoch.
    pub added_at_ms: u64,
    /// Who did that.
    pub added_by: String,
    /// When its newest certificate issued by the cluster (enrolment, renewal) expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after_ms: Option<u64>,
    /// When it was revoked (its roles went with it); cleared by a new enrolment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

impl OperatorRecord {
    /// A record with no role yet, added at `now` by `by`.
    pub fn new(now: u64, by: &str) -> OperatorRecord {
        OperatorRecord {
            grants: Default::default(),
            added_at_ms: now,
            added_by: by.to_owned(),
            cert_not_after_ms: None,
            revoked_at_ms: None,
        }
    }
}

/// A pending operator invitation (by its token's hash in [`State::operator_invites`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInvite {
    /// The operator's name.
    pub name: String,
    /// The roles it holds once enrolled.
    pub grants: std::collections::BTreeSet<dsops_proto::domain::RoleGrant>,
    /// When the invitation expires, ms since the epoch.
    pub expires_at_ms: u64,
    /// How long its certificate will be valid, in days.
    pub certificate_days: u32,
    /// Who invited it.
    pub invited_by: String,
}

/// A break-glass review: opened when an operator broke glass, closed by another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// `rv-<log index>`.
    pub id: String,
    /// The run that broke glass.
    pub run_id: String,
    /// The environment.
    pub env: String,
    /// The variable.
    pub key: String,
    /// Who broke glass.
    pub opened_by: String,
    /// Their reason.
    pub reason: String,
    /// When, ms since the epoch (log time).
    pub opened_at_ms: u64,
    /// When it should be closed by.
    pub deadline_ms: u64,
    /// When it was marked overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_at_ms: Option<u64>,
    /// Who closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by: Option<String>,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<u64>,
    /// What the review found.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// How long a break-glass review may stay open before it is overdue (24 h).
pub const REVIEW_DEADLINE_MS: u64 = 24 * 3600 * 1000;
/// How many closed reviews are kept (open ones are all kept).
pub const CLOSED_REVIEWS_KEPT: usize = 256;

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// How many operator invitations may wait at once (an admin's typo loop cannot grow the state).
pub const MAX_OPERATOR_INVITES: usize = 256;

/// Everything the control plane replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Configuration versions, newest last (at most [`CONFIG_HISTORY`]).
    pub configs: Vec<StoredConfig>,
    /// Nodes by id.
    pub nodes: BTreeMap<u64, NodeRecord>,
    /// The highest node id ever assigned (ids are never reused).
    pub max_node_id: u64,
    /// Join tokens by hash.
    pub join_tokens: BTreeMap<String, StoredToken>,
    /// (expiry, hash) of every token, so expired ones are dropped without a scan.
    #[serde(default)]
    pub token_expiry: std::collections::BTreeSet<(u64, String)>,
    /// The audit log.
    pub audit: AuditLog,
    /// Secrets that have had runs, by `env/KEY`.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRecord>,
    /// Runs by id (the last [`super::RUN_HISTORY`] per secret).
    #[serde(default)]
    pub runs: BTreeMap<String, Run>,
    /// Ids of runs in flight: what the dispatcher looks at, without scanning history.
    #[serde(default)]
    pub active_runs: std::collections::BTreeSet<String>,
    /// Started runs waiting for their next step to be dispatched, by (not before, run id): the
    /// dispatcher reads the due ones, O(due). Derived from `runs`; rebuilt on snapshot load.
    #[serde(skip)]
    pub ready: std::collections::BTreeSet<(u64, String)>,
    /// Runs not started yet (`Requested`), per target, by (not before, run id): started only
    /// while the target has room. Derived; rebuilt on snapshot load.
    #[serde(skip)]
    pub queued: BTreeMap<String, std::collections::BTreeSet<(u64, String)>>,
    /// Dispatched runs by (deadline, run id). Derived from `runs`; rebuilt on snapshot load.
    #[serde(skip)]
    pub deadlines: std::collections::BTreeSet<(u64, String)>,
    /// Runs past `Requested` and not finished, per target ([`super::RunSpec::target_key`]):
    /// what per-target concurrency limits count. Derived; rebuilt on snapshot load.
    #[serde(skip)]
    pub target_load: BTreeMap<String, u32>,
    /// Runs past `Requested` and not finished, per segment: what per-segment concurrency limits
    /// count. Derived; rebuilt on snapshot load.
    #[serde(skip)]
    pub segment_load: BTreeMap<String, u32>,
    /// When runs of each rate-limited target started (first dispatch), oldest first, within
    /// the last day. Derived; rebuilt on snapshot load.
    #[serde(skip)]
    pub target_starts: BTreeMap<String, std::collections::VecDeque<u64>>,
    /// Agents by id.
    #[serde(default)]
    pub agents: BTreeMap<String, AgentRecord>,
    /// Agent enrolment tokens by hash.
    #[serde(default)]
    pub agent_tokens: BTreeMap<String, super::runs::AgentToken>,
    /// (expiry, hash) of every agent token, so expired ones are dropped without a scan.
    #[serde(default)]
    pub agent_token_expiry: std::collections::BTreeSet<(u64, String)>,
    /// Operators with roles, by name. Empty until the first grant: until then every operator
    /// certificate of the cluster acts as admin (the one `init` created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operators: BTreeMap<String, OperatorRecord>,
    /// The audit sequence the notifier has read through.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notify_cursor: u64,
    /// Notification deliveries by id (see [`crate::outbox`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outbox: BTreeMap<String, crate::OutboxEntry>,
    /// Break-glass reviews by id: every open one, and the latest closed ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reviews: BTreeMap<String, Review>,
    /// Pending operator invitations by token hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operator_invites: BTreeMap<String, OperatorInvite>,
    /// Promotion lines by name: each one's current or last wave, and its halt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub promotions: BTreeMap<String, crate::PromotionLine>,
    /// Health checks (promotion gates) by name: each one's latest verdict.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, crate::GateRecord>,
    /// `dsops promotion halt --all`: no new run or step starts anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_all: Option<crate::Halt>,
    /// The evidence key generations, oldest first (see [`crate::evidence_apply`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence_keys: BTreeMap<u32, crate::EvidenceKey>,
    /// The newest signed checkpoint of the audit chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<crate::SignedCheckpoint>,
    /// When it was recorded, log time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_checkpoint_at_ms: u64,
    /// Report tokens by id (see [`crate::report_token_apply`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub report_tokens: BTreeMap<String, crate::ReportToken>,
    /// Counters of ended runs, for `/metrics`.
    #[serde(default, skip_serializing_if = "crate::RunCounters::is_empty")]
    pub run_counters: crate::RunCounters,
    /// Responses of recent requests, for idempotent retries.
    pub dedup: Dedup,
    /// Revoked certificate identities, by `role:name`: every certificate of that identity
    /// issued up to the revocation is refused on every node.
    #[serde(default)]
    pub revoked: BTreeMap<String, RevokedIdentity>,
    /// A configuration upload in progress ([`crate::config_staging`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_config: Option<crate::StagedConfig>,
}

/// A revoked identity: the certificates of `role` naming `name` that were issued at or before
/// `issued_up_to_ms` are refused (a certificate issued later, for a new key, is not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedIdentity {
    /// `peer`, `agent` or `operator`.
    pub role: String,
    /// The certificate's common name (`node-3`, `alice`, an agent id).
    pub name: String,
    /// Certificates issued at or before this time are revoked, ms since the epoch.
    pub issued_up_to_ms: u64,
    /// Who revoked it.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl State {
    /// Whether operator `name` may do what `permission` names: `Err` says why not (naming the
    /// operator, the permission and the roles it holds). Before any role was granted every
    /// operator of the cluster is an admin.
    pub fn operator_permits(
        &self,
        name: &str,
        permission: &dsops_proto::domain::Permission,
    ) -> Result<(), String> {
        if self.operators.is_empty() {
            return Ok(());
        }
        let grants = self.operators.get(name).map(|o| &o.grants);
        if grants.is_some_and(|grants| grants.iter().any(|g| g.permits(permission))) {
            return Ok(());
        }
        let held = match grants {
            Some(grants) if !grants.is_empty() => {
                grants.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
            _ => "no role".to_owned(),
        };
        Err(format!("operator {name} may not {permission} (holds: {held})"))
    }

    /// How many more runs like `spec` may start at `now` under its target's rate limit
    /// (`u32::MAX` without one).
    pub fn rate_room(&self, spec: &super::RunSpec, now: u64) -> u32 {
        let Some(rate) = spec.rate_limit else { return u32::MAX };
        let since = now.saturating_sub(rate.per_ms);
        let recent = self
            .target_starts
            .get(&spec.target_key())
            .map_or(0, |starts| starts.iter().rev().take_while(|at| **at > since).count());
        rate.runs.saturating_sub(recent as u32)
    }

    /// Records that a run of `spec` started at `now` (its target's rate window).
    pub(crate) fn record_start(&mut self, spec: &super::RunSpec, now: u64) {
        if spec.rate_limit.is_none() {
            return;
        }
        let starts = self.target_starts.entry(spec.target_key()).or_default();
        starts.push_back(now);
        while starts.front().is_some_and(|at| *at + 86_400_000 < now) || starts.len() > 100_000 {
            starts.pop_front();
        }
    }

    /// The current configuration.
    pub fn current_config(&self) -> Option<&StoredConfig> {
        self.configs.last()
    }

    /// Takes a run out of the dispatcher's indexes (before it changes).
    pub(crate) fn unindex_run(&mut self, run_id: &str) {
        if let Some(run) = self.runs.get(run_id) {
            self.ready.remove(&(run.not_before_ms, run_id.to_owned()));
            if run.phase == super::RunPhase::Requested {
                let key = run.spec.target_key();
                if let Some(queue) = self.queued.get_mut(&key) {
                    queue.remove(&(run.not_before_ms, run_id.to_owned()));
                    if queue.is_empty() {
                        self.queued.remove(&key);
                    }
                }
            }
            if let Some(dispatch) = &run.dispatched {
                self.deadlines.remove(&(dispatch.deadline_ms, run_id.to_owned()));
            }
        }
    }

    /// Puts a run into the dispatcher's indexes (after it changed).
    pub(crate) fn index_run(&mut self, run_id: &str) {
        let Some(run) = self.runs.get(run_id) else { return };
        if run.phase.is_terminal() || run.step.is_none() {
            return;
        }
        match &run.dispatched {
            Some(dispatch) => self.deadlines.insert((dispatch.deadline_ms, run_id.to_owned())),
            None if run.phase == super::RunPhase::Requested => {
                let entry = (run.not_before_ms, run_id.to_owned());
                self.queued.entry(run.spec.target_key()).or_default().insert(entry)
            }
            None => self.ready.insert((run.not_before_ms, run_id.to_owned())),
        };
    }

    /// Rebuilds the derived indexes (after loading a snapshot).
    pub fn rebuild_indexes(&mut self) {
        self.ready.clear();
        self.queued.clear();
        self.deadlines.clear();
        self.target_load.clear();
        self.segment_load.clear();
        self.target_starts.clear();
        let mut starts: Vec<(String, u64)> = self
            .runs
            .values()
            .filter(|run| run.spec.rate_limit.is_some())
            .filter_map(|run| {
                let at = run.transitions.iter().find(|t| t.phase == super::RunPhase::Dispatched)?;
                Some((run.spec.target_key(), at.at_ms))
            })
            .collect();
        starts.sort_by_key(|(_, at)| *at);
        for (key, at) in starts {
            self.target_starts.entry(key).or_default().push_back(at);
        }
        let active: Vec<String> = self.active_runs.iter().cloned().collect();
        for run_id in active {
            self.index_run(&run_id);
            if let Some(run) = self.runs.get(&run_id)
                && !matches!(
                    run.phase,
                    super::RunPhase::Requested | super::RunPhase::AwaitingApproval
                )
            {
                *self.target_load.entry(run.spec.target_key()).or_default() += 1;
                *self.segment_load.entry(run.spec.segment.clone()).or_default() += 1;
            }
        }
    }

    /// Whether a certificate of `role` naming `name`, issued at `issued_ms`, is revoked.
    pub fn is_revoked(&self, role: &str, name: &str, issued_ms: u64) -> bool {
        self.revoked.get(&format!("{role}:{name}")).is_some_and(|r| issued_ms <= r.issued_up_to_ms)
    }

    /// The current configuration version (0 when none).
    pub fn config_version(&self) -> u64 {
        self.current_config().map_or(0, |c| c.version)
    }
}
