//! The settings each store type and service type takes in `dsops.yaml`.
//!
//! The catalog says what a service type *is*; this table says what dsops needs to *reach* one
//! (host, port, admin credential, ...). Service types that dsops has no adapter for take any
//! settings, which are passed to `script` and `webhook` rotations as they are.

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Any non-empty text.
    Text,
    /// A host name or IP address.
    Host,
    /// A TCP port, 1 to 65535.
    Port,
    /// `store://<store>/<path>` naming a whole entry (fields `user` and `password`).
    StoreEntry,
    /// `store://<store>/<path>#<field>` naming one value.
    StoreField,
    /// An `http://` or `https://` URL.
    Url,
    /// A URL that secret values are sent to: `https://`, or `http://` to a loopback address.
    SecretUrl,
    /// A duration such as `30s`.
    Duration,
    /// A list of non-empty texts.
    TextList,
    /// A command: one text or a list of arguments.
    Command,
    /// `true` or `false`.
    Bool,
    /// One of the given words.
    Choice(&'static [&'static str]),
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Its key.
    pub name: &'static str,
    /// What its value must be.
    pub kind: FieldKind,
    /// Whether it must be present.
    pub required: bool,
}

const fn req(name: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec { name, kind, required: true }
}

const fn opt(name: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec { name, kind, required: false }
}

/// Keys every service and store takes besides its type's settings.
pub const COMMON_KEYS: [&str; 3] = ["type", "segment", "description"];

const POSTGRES: &[FieldSpec] = &[
    req("host", FieldKind::Host),
    opt("port", FieldKind::Port),
    req("database", FieldKind::Text),
    req("admin_store", FieldKind::StoreEntry),
    opt(
        "sslmode",
        FieldKind::Choice(&["disable", "prefer", "require", "verify-ca", "verify-full"]),
    ),
    // The CA that signs the server's certificate, for verify-ca/verify-full.
    opt("ca_file", FieldKind::Text),
];
const MYSQL: &[FieldSpec] = &[
    req("host", FieldKind::Host),
    opt("port", FieldKind::Port),
    opt("database", FieldKind::Text),
    req("admin_store", FieldKind::StoreEntry),
    opt(
        "tls",
        FieldKind::Choice(&["disabled", "preferred", "required", "verify-ca", "verify-identity"]),
    ),
    opt("user_host", FieldKind::Text),
    opt("ca_file", FieldKind::Text),
];
const REDIS: &[FieldSpec] = &[
    req("host", FieldKind::Host),
    opt("port", FieldKind::Port),
    req("admin_store", FieldKind::StoreEntry),
    opt("tls", FieldKind::Bool),
    opt("ca_file", FieldKind::Text),
];
// API services: the key dsops rotates with comes from `admin_store` or `auth` (a store field),
// or, with neither, from the agent's environment (its own process, never the control plane).
const STRIPE: &[FieldSpec] = &[
    opt("environment", FieldKind::Choice(&["live", "test"])),
    opt("admin_store", FieldKind::StoreField),
    opt("auth", FieldKind::StoreField),
    opt("endpoint", FieldKind::Url),
];
const GITHUB: &[FieldSpec] = &[
    req("org", FieldKind::Text),
    opt("admin_store", FieldKind::StoreEntry),
    opt("auth", FieldKind::StoreField),
    opt("endpoint", FieldKind::Url),
    // A GitHub App's installation tokens: the App's id and the installation's.
    opt("app_id", FieldKind::Text),
    opt("installation_id", FieldKind::Text),
];
const AWS_IAM: &[FieldSpec] = &[
    // Without it, the agent uses its host's AWS credential chain.
    opt("admin_store", FieldKind::StoreEntry),
    req("region", FieldKind::Text),
    opt("endpoint", FieldKind::Url),
];
const ACME: &[FieldSpec] = &[
    req("directory", FieldKind::Url),
    req("account_store", FieldKind::StoreEntry),
    req("domains", FieldKind::TextList),
    opt("contact", FieldKind::Text),
    opt("ca_bundle", FieldKind::Text),
    opt("challenge", FieldKind::Choice(&["http-01", "dns-01"])),
    opt("http01_listen", FieldKind::Text),
    opt("dns01_command", FieldKind::Command),
    opt("key_type", FieldKind::Choice(&["ecdsa-p256", "ecdsa-p384", "ed25519"])),
];
const INTERNAL_CA: &[FieldSpec] = &[
    req("ca_store", FieldKind::StoreEntry),
    opt("validity", FieldKind::Duration),
    opt("key_type", FieldKind::Choice(&["ecdsa-p256", "ecdsa-p384", "ed25519"])),
];
const WEBHOOK: &[FieldSpec] = &[
    req("url", FieldKind::SecretUrl),
    opt("timeout", FieldKind::Duration),
    opt("auth_store", FieldKind::StoreField),
    opt("ca_file", FieldKind::Text),
];
const SCRIPT: &[FieldSpec] = &[
    req("command", FieldKind::Command),
    opt("timeout", FieldKind::Duration),
    opt("working_dir", FieldKind::Text),
];
const APP_SECRET: &[FieldSpec] = &[];

/// The settings of a service type dsops has an adapter for; `None` for other types.
pub fn service_fields(service_type: &str) -> Option<&'static [FieldSpec]> {
    Some(match service_type {
        "postgresql" => POSTGRES,
        "mysql" => MYSQL,
        "redis" => REDIS,
        "stripe" => STRIPE,
        "github" => GITHUB,
        "aws-iam" => AWS_IAM,
        "acme-certificate" => ACME,
        "internal-ca-certificate" => INTERNAL_CA,
        "webhook" => WEBHOOK,
        "script" => SCRIPT,
        "app-secret" => APP_SECRET,
        _ => return None,
    })
}

/// The store types dsops knows, with their settings: each validates; which ones an agent can
/// read and write in this version is [`store_type_runs`].
pub const STORE_TYPES: [(&str, &[FieldSpec]); 6] = [
    ("file", &[opt("path", FieldKind::Text), opt("key_file", FieldKind::Text)]),
    (
        "vault",
        &[
            req("address", FieldKind::Url),
            opt("mount", FieldKind::Text),
            opt("namespace", FieldKind::Text),
            opt("auth", FieldKind::Choice(&["token", "approle", "kubernetes"])),
        ],
    ),
    (
        "aws.secretsmanager",
        &[
            req("region", FieldKind::Text),
            opt("endpoint", FieldKind::Url),
            opt("kms_key_id", FieldKind::Text),
            // The agent's AWS credentials in a file store; without it, the host's AWS chain.
            opt("credentials", FieldKind::StoreEntry),
        ],
    ),
    (
        "onepassword",
        &[
            opt("vault", FieldKind::Text),
            opt("account", FieldKind::Text),
            opt("connect_host", FieldKind::Url),
        ],
    ),
    ("gcp.secretmanager", &[req("project", FieldKind::Text), opt("location", FieldKind::Text)]),
    ("azure.keyvault", &[req("vault_url", FieldKind::Url)]),
];

/// Earlier spellings of store types, still accepted: (old, current).
pub const STORE_TYPE_ALIASES: [(&str, &str); 1] = [("aws-secrets-manager", "aws.secretsmanager")];

/// The store types an agent of this version reads and writes.
pub const RUNNABLE_STORE_TYPES: [&str; 2] = ["file", "aws.secretsmanager"];

/// The service types whose passwords an agent of this version changes itself (the `immediate`
/// and `two-key` strategies); other types rotate through `script` or `webhook` services. The
/// agent's adapter registry (`dsops_agent::adapter::SERVICE_TYPES`) must hold the same types (an
/// agent test keeps the two equal).
pub const ADAPTER_TYPES: [&str; 3] = ["postgresql", "mysql", "redis"];

/// The service types an agent of this version rotates with the `overlap` strategy: of
/// [`ADAPTER_TYPES`], those whose users hold two passwords at once (the agent's
/// `adapter::OVERLAP_TYPES`), the certificates it issues (`certificate::CERTIFICATE_TYPES`) and
/// AWS IAM access keys (`aws-iam`).
pub const OVERLAP_TYPES: [&str; 4] =
    ["redis", "internal-ca-certificate", "acme-certificate", "aws-iam"];

/// Short names people write for service types in `svc://<type>/<service>`: (short, type).
pub const SERVICE_TYPE_ALIASES: [(&str, &str); 3] =
    [("postgres", "postgresql"), ("pg", "postgresql"), ("mariadb", "mysql")];

/// Whether `written` (the `<type>` of `svc://<type>/<service>`) names the type `actual`.
pub fn service_type_is(written: &str, actual: &str) -> bool {
    written == actual || SERVICE_TYPE_ALIASES.contains(&(written, actual))
}

/// The current name of `store_type` (an alias resolved), or itself.
pub fn store_type_name(store_type: &str) -> &str {
    STORE_TYPE_ALIASES.iter().find(|(old, _)| *old == store_type).map_or(store_type, |(_, new)| new)
}

/// Whether an agent of this version can read and write stores of `store_type`; if not, the
/// error to show where one is used.
pub fn store_type_runs(store_name: &str, store_type: &str) -> Result<(), String> {
    if RUNNABLE_STORE_TYPES.contains(&store_type) {
        return Ok(());
    }
    Err(format!(
        "store {store_name:?} is of type {store_type}, which is not supported in this version (an agent reads and writes {} stores)",
        RUNNABLE_STORE_TYPES.join(", ")
    ))
}

/// The settings of a store type, if dsops has it.
pub fn store_fields(store_type: &str) -> Option<&'static [FieldSpec]> {
    let store_type = store_type_name(store_type);
    STORE_TYPES.iter().find(|(name, _)| *name == store_type).map(|(_, fields)| *fields)
}
