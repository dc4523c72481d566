//! The four catalog kinds as typed values, read from documents that already passed the JSON
//! Schemas. Field names follow the dsops-data layout (camelCase).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A rotation strategy (see `docs/rotation.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Change one user's credential in place.
    Immediate,
    /// Two users or keys that take turns.
    TwoKey,
    /// Two valid credentials for one identity during a grace period.
    Overlap,
    /// Generate and store an application secret; no target.
    Random,
    /// A user script applies and verifies.
    Script,
    /// A user webhook applies and verifies.
    Webhook,
}

impl Strategy {
    /// Every strategy, for messages.
    pub const ALL: [Strategy; 6] = [
        Strategy::Immediate,
        Strategy::TwoKey,
        Strategy::Overlap,
        Strategy::Random,
        Strategy::Script,
        Strategy::Webhook,
    ];

    /// The name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Immediate => "immediate",
            Strategy::TwoKey => "two-key",
            Strategy::Overlap => "overlap",
            Strategy::Random => "random",
            Strategy::Script => "script",
            Strategy::Webhook => "webhook",
        }
    }

    /// Parses a name.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can be done with a credential kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Create a new credential.
    Create,
    /// Prove a credential works.
    Verify,
    /// Replace a credential's value.
    Rotate,
    /// Revoke or disable a credential.
    Revoke,
    /// List existing credentials.
    List,
    /// Read a credential's metadata.
    Read,
}

/// `metadata` of a ServiceType.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypeMetadata {
    /// The type's name (its key).
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// The adapter family: `database`, `api-service`, `certificate`, `cloud`, ...
    #[serde(default)]
    pub category: Option<String>,
    /// Finer categories within it (`payment`, `source-control`), for `dsops list services
    /// --category`.
    #[serde(default)]
    pub subcategories: Vec<String>,
}

/// How many credentials of a kind may be active at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxActive {
    /// At most this many.
    Limited(u32),
    /// No limit (`unlimited`).
    Unlimited(Unlimited),
}

/// The word `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    /// No limit.
    Unlimited,
}

impl MaxActive {
    /// Whether two credentials can be active at once (needed by `overlap`).
    pub fn allows_two(self) -> bool {
        match self {
            MaxActive::Limited(n) => n >= 2,
            MaxActive::Unlimited(_) => true,
        }
    }
}

impl fmt::Display for MaxActive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxActive::Limited(n) => n.fmt(f),
            MaxActive::Unlimited(_) => f.write_str("unlimited"),
        }
    }
}

/// Limits on a credential kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    /// How many may be active at once.
    #[serde(default)]
    pub max_active: Option<MaxActive>,
    /// The longest a credential may live (`90d`).
    #[serde(default)]
    pub ttl: Option<String>,
    /// A regular expression the generated value must match, or a named charset.
    #[serde(default)]
    pub format: Option<String>,
}

/// One kind of credential a service type has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialKind {
    /// The kind's name, e.g. `db_password`.
    pub name: String,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// What can be done with it.
    pub capabilities: Vec<Capability>,
    /// Its limits.
    #[serde(default)]
    pub constraints: Option<Constraints>,
    /// How the generic HTTP adapter creates, verifies and revokes it (API keys described as
    /// data: a new provider needs a catalog file, no code).
    #[serde(default)]
    pub http: Option<HttpApi>,
}

/// An HTTP API that creates, verifies and revokes one kind of credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpApi {
    /// `https://api.example.com`; a service's `endpoint` replaces it.
    pub base_url: String,
    /// Makes a new credential (its response holds the secret and its id).
    pub create: HttpCall,
    /// Proves a credential works (sent with the new one).
    pub verify: HttpCall,
    /// Revokes a credential (the old one at retire, the run's own at rollback); without it
    /// the old credential is left to expire.
    #[serde(default)]
    pub revoke: Option<HttpCall>,
}

/// One request of an [`HttpApi`]. Path, headers and body take `{placeholders}`: `{admin}`,
/// `{current}`, `{current_id}`, `{new}`, `{new_id}`, `{old}`, `{old_id}`, `{setting.<name>}`,
/// `{config.<name>}`, `{github_app_jwt}`; `{name|default}` gives a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCall {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// Appended to the base URL.
    pub path: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that mean done (default 200, 201, 204).
    #[serde(default)]
    pub success: Vec<u16>,
    /// Statuses that mean refused with nothing changed (default: the other 4xx).
    #[serde(default)]
    pub not_applied: Vec<u16>,
    /// Statuses worth retrying later (default 408, 429 and 5xx).
    #[serde(default)]
    pub retry: Vec<u16>,
    /// JSON pointer to the new secret in a create's response.
    #[serde(default)]
    pub value: Option<String>,
    /// JSON pointer to the new credential's id in a create's response.
    #[serde(default)]
    pub id: Option<String>,
}

/// Defaults of a service type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypeDefaults {
    /// How fast the target may be called (`low`, `10/minute`).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// The strategy used when neither the variable nor its policy names one.
    #[serde(default)]
    pub rotation_strategy: Option<Strategy>,
}

/// `spec` of a ServiceType.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypeSpec {
    /// Its credential kinds.
    pub credential_kinds: Vec<CredentialKind>,
    /// Its defaults.
    #[serde(default)]
    pub defaults: Option<TypeDefaults>,
}

/// A ServiceType document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceType {
    /// `dsops.io/v1` (or an accepted alias).
    pub api_version: String,
    /// `ServiceType`.
    pub kind: String,
    /// Name and category.
    pub metadata: TypeMetadata,
    /// Credential kinds and defaults.
    pub spec: TypeSpec,
}

impl ServiceType {
    /// A credential kind by name.
    pub fn credential_kind(&self, name: &str) -> Option<&CredentialKind> {
        self.spec.credential_kinds.iter().find(|k| k.name == name)
    }

    /// The type's default strategy.
    pub fn default_strategy(&self) -> Option<Strategy> {
        self.spec.defaults.as_ref().and_then(|d| d.rotation_strategy)
    }
}

/// `metadata` of a ServiceInstance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceMetadata {
    /// The ServiceType name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// The instance's id, unique within its type.
    pub id: String,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
    /// What it is.
    #[serde(default)]
    pub description: Option<String>,
    /// `key:value` tags such as `env:prod`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A credential kind managed on an instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceCredential {
    /// A credential kind of the instance's type.
    pub name: String,
    /// The RotationPolicy that governs it.
    #[serde(default)]
    pub policy: Option<String>,
    /// The Principals that use or own it.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Kind-specific settings.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// `spec` of a ServiceInstance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    /// URL or host.
    pub endpoint: String,
    /// How the agent authenticates (often `ref:store://...`).
    #[serde(default)]
    pub auth: Option<String>,
    /// The credentials managed here.
    pub credential_kinds: Vec<InstanceCredential>,
    /// Instance settings.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
}

/// A ServiceInstance document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceInstance {
    /// API version.
    pub api_version: String,
    /// `ServiceInstance`.
    pub kind: String,
    /// Type, id and tags.
    pub metadata: InstanceMetadata,
    /// Endpoint and credentials.
    pub spec: InstanceSpec,
}

impl ServiceInstance {
    /// The instance's key, `type/id`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.metadata.type_name, self.metadata.id)
    }

    /// Whether it has a `key:value` tag (or a bare `key` tag when `value` is empty).
    pub fn has_tag(&self, key: &str, value: &str) -> bool {
        self.metadata.tags.iter().any(|tag| match tag.split_once(':') {
            Some((k, v)) => k == key && v == value,
            None => tag == key && value.is_empty(),
        })
    }
}
