//! The validated configuration, as `dsops.yaml` describes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dsops_proto::domain::{ServiceRef, StoreRef};

use crate::catalog::Strategy;
use crate::document::Node;
use crate::time::{Duration, Schedule};

/// A whole `dsops.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, as named in messages.
    pub file: String,
    /// The format version (1).
    pub version: u32,
    /// `secretStores`, by name.
    pub secret_stores: BTreeMap<String, StoreConfig>,
    /// `services`, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// `rotation`.
    pub rotation: RotationConfig,
    /// `envs`, by name.
    pub envs: BTreeMap<String, EnvConfig>,
    /// `notifications`: channels and the installation's target names.
    pub notifications: super::notify::NotificationsConfig,
    /// `health`: checks that gate promotion, by name.
    pub health: BTreeMap<String, super::promotion::HealthCheck>,
    /// `policies`: what secrets must meet, by name.
    pub policies: BTreeMap<String, super::enforce::EnforcePolicy>,
    /// The promotion lines, computed on first use (see [`Config::promotion_lines`]).
    pub(crate) lines: std::sync::OnceLock<super::promotion::Lines>,
}

/// One secret store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Its name.
    pub name: String,
    /// One of [`super::fields_table::STORE_TYPES`] (`file`, `vault`, `aws.secretsmanager`, ...),
    /// an earlier spelling resolved.
    pub store_type: String,
    /// The network segment whose agents can reach it; `None` for the default segment.
    pub segment: Option<String>,
    /// Type-specific settings, validated against the store type's fields.
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// One service (a rotation target).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Its name.
    pub name: String,
    /// A ServiceType name from the catalog.
    pub service_type: String,
    /// The network segment whose agents can reach it; `None` for the default segment.
    pub segment: Option<String>,
    /// Where the admin credential lives (an entry with `user` and `password` fields, or a field).
    pub admin_store: Option<StoreRef>,
    /// Type-specific settings (host, port, ...), validated against the type's fields.
    pub settings: BTreeMap<String, serde_json::Value>,
    /// `rate_limit`: how fast its rotations may start, instead of its type's `rateLimit`.
    pub rate_limit: Option<String>,
    /// The parsed node, for positions in later checks.
    pub node: Node,
}

/// `rotation`: catalog location and defaults.
#[derive(Debug, Clone, Default)]
pub struct RotationConfig {
    /// `dataDir`: an extra catalog directory, resolved against the config file's directory.
    pub data_dir: Option<PathBuf>,
    /// `defaults`.
    pub defaults: RotationDefaults,
    /// `approvals`: who must approve rotations, by environment.
    pub approvals: BTreeMap<String, ApprovalRule>,
    /// `promotion`: the order environments rotate in.
    pub promotion: Vec<super::promotion::PromotionStage>,
    /// `enforce`: the policies a configuration must meet to be accepted.
    pub enforce: Vec<String>,
    /// `blackouts`: when nothing starts but break-glass.
    pub blackouts: Vec<crate::time::Blackout>,
}

/// `rotation.approvals.<env>`: a rotation in the environment waits until `required` distinct
/// people among `approvers` (names, or `role:<role>`) approved it, for at most `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// How many distinct approvers (the requester never counts).
    pub required: u32,
    /// Operator names and `role:<role>` entries; `role:approver` when the file names none.
    pub approvers: Vec<String>,
    /// How long a request waits before it expires.
    pub expires: Duration,
    /// Who hears at once when a rotation here waits for approval or glass is broken: the
    /// approvers' targets (`slack:#prod-approvers`, a team name, ...).
    pub notify: Vec<String>,
}

impl ApprovalRule {
    /// What a catalog policy's `constraints.requireApproval: true` means where `dsops.yaml` names
    /// no rule for the environment: one person with the approver role, within a day.
    pub fn catalog_default() -> ApprovalRule {
        ApprovalRule {
            required: 1,
            approvers: vec!["role:approver".to_owned()],
            expires: Duration::from_secs(24 * 3600),
            notify: Vec::new(),
        }
    }
}

/// `rotation.defaults`.
#[derive(Debug, Clone, Default)]
pub struct RotationDefaults {
    /// The schedule of secrets that name none (and whose policy names none).
    pub schedule: Option<Schedule>,
    /// How long an old credential stays valid after promotion.
    pub grace_period: Option<Duration>,
    /// Who hears about rotations.
    pub notification: Notification,
    /// How far a scheduled start is spread after its firing (a fixed offset per secret).
    pub jitter: Option<Duration>,
}

/// Notification targets such as `slack:#ops` or `email:ops@example.com`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Notification {
    /// On success.
    pub on_success: Vec<String>,
    /// On failure or quarantine.
    pub on_failure: Vec<String>,
}

/// One environment.
#[derive(Debug, Clone)]
pub struct EnvConfig {
    /// Its name.
    pub name: String,
    /// Its variables, by name.
    pub secrets: BTreeMap<String, SecretConfig>,
}

/// One variable of an environment.
#[derive(Debug, Clone)]
pub struct SecretConfig {
    /// The environment.
    pub env: String,
    /// The variable name.
    pub key: String,
    /// `from.store`: where the value lives.
    pub store: StoreRef,
    /// `from.service`: the rotation target, if any.
    pub service: Option<ServiceRef>,
    /// `rotation`, if the variable rotates at all.
    pub rotation: Option<SecretRotation>,
    /// `promotion.group`: the line it rotates in, when not the one of its key.
    pub group: Option<String>,
    /// The parsed node, for positions in later checks.
    pub node: Node,
}

/// `rotation` of one variable.
#[derive(Debug, Clone, Default)]
pub struct SecretRotation {
    /// A RotationPolicy name.
    pub policy: Option<String>,
    /// The strategy, if given here.
    pub strategy: Option<Strategy>,
    /// The schedule, if given here.
    pub schedule: Option<Schedule>,
    /// Strategy settings (`username`, `usernames`, `length`, ...).
    pub config: serde_json::Map<String, serde_json::Value>,
}
