//! RotationPolicy and Principal documents.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Strategy;

/// Name, description and labels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedMetadata {
    /// The document's name (its key).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// How a new credential is proven.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verification {
    /// `connection`, `query`, `http`, ...
    pub method: String,
    /// What to call, where the method needs it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How long one attempt may take.
    #[serde(default)]
    pub timeout: Option<String>,
    /// How many times to retry.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// How the switch to the new credential happens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cutover {
    /// Require the verification to pass before promotion.
    #[serde(default)]
    pub require_check: Option<bool>,
    /// How long the old credential stays valid after promotion.
    #[serde(default)]
    pub grace_period: Option<String>,
    /// How long after promotion a rollback is still possible.
    #[serde(default)]
    pub rollback_window: Option<String>,
}

/// A notice sent ahead of expiry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BeforeExpiry {
    /// Where to send it.
    pub targets: Vec<String>,
    /// How long before expiry.
    pub advance: String,
}

/// Who hears about rotations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notifications {
    /// On success.
    #[serde(default)]
    pub on_success: Vec<String>,
    /// On failure or quarantine.
    #[serde(default)]
    pub on_failure: Vec<String>,
    /// Ahead of expiry.
    #[serde(default)]
    pub before_expiry: Option<BeforeExpiry>,
}

/// A maintenance window as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// When it opens (cron).
    pub cron: String,
    /// How long it stays open.
    pub duration: String,
    /// IANA time zone; UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// What constrains a rotation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyConstraints {
    /// A human must approve before it proceeds.
    #[serde(default)]
    pub require_approval: Option<bool>,
    /// It may only start inside one of these.
    #[serde(default)]
    pub maintenance_windows: Vec<WindowSpec>,
    /// Environments the policy may not be used in.
    #[serde(default)]
    pub exclude_environments: Vec<String>,
}

/// `spec` of a RotationPolicy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The strategy.
    pub strategy: Strategy,
    /// 5-field cron.
    #[serde(default)]
    pub schedule: Option<String>,
    /// How new credentials are proven.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// How the switch happens.
    #[serde(default)]
    pub cutover: Option<Cutover>,
    /// Who hears about it.
    #[serde(default)]
    pub notifications: Option<Notifications>,
    /// Approval and windows.
    #[serde(default)]
    pub constraints: Option<PolicyConstraints>,
    /// What every secret in scope must meet (`dsops rotation enforce`).
    #[serde(default)]
    pub requirements: Option<Requirements>,
}

/// `spec.requirements` of a RotationPolicy: the rules of `dsops rotation enforce`, as
/// `policies.<name>` in dsops.yaml writes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirements {
    /// The environments covered (empty: all).
    #[serde(default)]
    pub envs: Vec<String>,
    /// The longest a value may live.
    #[serde(default)]
    pub max_age: Option<String>,
    /// The strategies allowed.
    #[serde(default)]
    pub strategies: Option<Vec<String>>,
    /// Every rotation waits for approval.
    #[serde(default)]
    pub require_approval: Option<bool>,
    /// Generated values at least this long.
    #[serde(default)]
    pub min_length: Option<u64>,
    /// The charsets generated values may use.
    #[serde(default)]
    pub charsets: Option<Vec<String>>,
    /// Every secret in scope rotates.
    #[serde(default)]
    pub require_rotation: Option<bool>,
}

/// A RotationPolicy document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationPolicy {
    /// API version.
    pub api_version: String,
    /// `RotationPolicy`.
    pub kind: String,
    /// Name and labels.
    pub metadata: NamedMetadata,
    /// The policy.
    pub spec: PolicySpec,
}

impl RotationPolicy {
    /// Whether rotations under this policy need an approval.
    pub fn requires_approval(&self) -> bool {
        self.spec.constraints.as_ref().and_then(|c| c.require_approval).unwrap_or(false)
    }
}

/// What a principal may hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permissions {
    /// Service types or instance keys it may use.
    #[serde(default)]
    pub allowed_services: Vec<String>,
    /// Credential kinds it may hold.
    #[serde(default)]
    pub allowed_credential_kinds: Vec<String>,
    /// The longest TTL of a credential it holds.
    #[serde(default, rename = "maxCredentialTTL")]
    pub max_credential_ttl: Option<String>,
}

/// How to reach a principal's owners.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contact {
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Slack channel or handle.
    #[serde(default)]
    pub slack: Option<String>,
    /// On-call rotation.
    #[serde(default)]
    pub oncall: Option<String>,
}

/// `spec` of a Principal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrincipalSpec {
    /// `service`, `service-account`, `user`, `team`, ...
    #[serde(rename = "type")]
    pub principal_type: String,
    /// E-mail.
    #[serde(default)]
    pub email: Option<String>,
    /// Owning team.
    #[serde(default)]
    pub team: Option<String>,
    /// Environment it belongs to.
    #[serde(default)]
    pub environment: Option<String>,
    /// What it may hold.
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// How to reach its owners.
    #[serde(default)]
    pub contact: Option<Contact>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// A Principal document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// API version.
    pub api_version: String,
    /// `Principal`.
    pub kind: String,
    /// Name and labels.
    pub metadata: NamedMetadata,
    /// The principal.
    pub spec: PrincipalSpec,
}
