//! What each strategy needs from the variable, its service and its credential kind.

use serde_json::Value as Json;

use super::model::{SecretConfig, ServiceConfig};
use super::resolve::{ResolvedSecret, rotatable};
use crate::catalog::{CHARSETS, CredentialKind, ServiceType, Strategy};
use crate::document::{Diagnostics, Fields, Pos};

/// The credential kind of a database connection URL (`postgresql://user:password@host/db`).
pub const CONNECTION_STRING: &str = "connection_string";

fn is_database(service_type: Option<&ServiceType>) -> bool {
    service_type.and_then(|t| t.metadata.category.as_deref()) == Some("database")
}

fn is_certificate(service_type: Option<&ServiceType>) -> bool {
    service_type.and_then(|t| t.metadata.category.as_deref()) == Some("certificate")
}

/// The `rotation.config` keys a strategy takes, when dsops knows them (for other targets the
/// adapter defines them).
fn config_keys(
    strategy: Strategy,
    database: bool,
    certificate: bool,
    aws: bool,
) -> Option<&'static [&'static str]> {
    match strategy {
        Strategy::Overlap if certificate => Some(super::renewal::CERTIFICATE_KEYS),
        Strategy::Overlap if aws => Some(&["user_name"]),
        Strategy::Random => Some(&["length", "charset"]),
        // `script_path` is how the project's vision spells `command`.
        Strategy::Script => Some(&["command", "script_path", "args", "timeout"]),
        Strategy::Webhook => Some(&["url", "timeout"]),
        Strategy::Immediate | Strategy::Overlap if database => Some(&["username"]),
        Strategy::TwoKey if database => Some(&["usernames"]),
        _ => None,
    }
}

/// Reports problems at the right place in one variable.
struct Reporter<'a> {
    file: &'a str,
    base: &'a str,
    secret: &'a SecretConfig,
    diagnostics: &'a mut Diagnostics,
}

impl Reporter<'_> {
    fn pos(&self, pointer: &str) -> Pos {
        self.secret.node.at_pointer(pointer).pos
    }

    /// An error about `rotation.<field>` (or `rotation.config.<key>`).
    fn at(&mut self, field: &str, message: String) {
        let pointer = format!("/rotation/{}", field.replace('.', "/"));
        let pos = self.pos(&pointer);
        self.diagnostics.error(self.file, pos, &format!("{}.rotation.{field}", self.base), message);
    }
}

/// Checks the strategy against everything it depends on.
#[allow(clippy::too_many_arguments)]
pub(super) fn check(
    file: &str,
    base: &str,
    secret: &SecretConfig,
    service: Option<&ServiceConfig>,
    service_type: Option<&ServiceType>,
    kind: Option<&CredentialKind>,
    strategy: Strategy,
    diagnostics: &mut Diagnostics,
) {
    let database = is_database(service_type);
    if let (Some(keys), Some(config)) = (
        config_keys(
            strategy,
            database,
            is_certificate(service_type),
            service_type.is_some_and(|t| t.metadata.name == "aws-iam"),
        ),
        secret.node.at_pointer("/rotation").get("config"),
    ) {
        Fields::read(config, file, &format!("{base}.rotation.config"), keys, diagnostics);
    }
    let mut report = Reporter { file, base, secret, diagnostics };
    let config = secret.rotation.as_ref().map(|r| &r.config);
    let get = |key: &str| config.and_then(|c| c.get(key));
    let type_name = service_type.map(|t| t.metadata.name.as_str()).unwrap_or_default();

    if let Some(kind) = kind
        && strategy != Strategy::Random
        && !rotatable(kind)
    {
        report.at(
            "strategy",
            format!(
                "credential kind {type_name}/{} cannot be created or rotated (capabilities: {:?})",
                kind.name, kind.capabilities
            ),
        );
    }
    match strategy {
        Strategy::Random => {
            if service.is_some() && type_name != "app-secret" {
                report.at(
                    "strategy",
                    format!("`random` generates a value with no target, but from.service points at a {type_name} service; remove from.service or choose immediate, two-key or overlap"),
                );
            }
            if let Some(length) = get("length")
                && !length.as_u64().is_some_and(|n| (16..=4096).contains(&n))
            {
                report.at(
                    "config.length",
                    format!("length must be an integer from 16 to 4096, got {length}"),
                );
            }
            if let Some(charset) = get("charset")
                && !charset.as_str().is_some_and(|c| CHARSETS.contains(&c))
            {
                report.at(
                    "config.charset",
                    format!("charset must be one of: {}", CHARSETS.join(", ")),
                );
            }
        }
        Strategy::Script => {
            if type_name != "script" && get("command").is_none() && get("script_path").is_none() {
                report.at("strategy", "the `script` strategy needs a service of type script, or rotation.config.command".to_owned());
            }
        }
        Strategy::Webhook => {
            if type_name != "webhook" && get("url").is_none() {
                report.at("strategy", "the `webhook` strategy needs a service of type webhook, or rotation.config.url".to_owned());
            }
        }
        Strategy::Immediate | Strategy::TwoKey | Strategy::Overlap => {
            if service.is_none() {
                let pos = report.pos("/from");
                report.diagnostics.error(
                    file,
                    pos,
                    &format!("{base}.from.service"),
                    format!("the `{strategy}` strategy changes a credential on a service: set from.service to svc://<service>?kind=<kind>"),
                );
                return;
            }
            if strategy == Strategy::Overlap
                && let Some(kind) = kind
            {
                let max = kind.constraints.as_ref().and_then(|c| c.max_active);
                if !max.is_some_and(|m| m.allows_two()) {
                    let shown = max.map_or("not declared".to_owned(), |m| m.to_string());
                    report.at(
                        "strategy",
                        format!("`overlap` needs two valid credentials at once, but {type_name}/{} allows maxActive {shown}; use two-key (two users taking turns) or immediate", kind.name),
                    );
                }
            }
            // A connection string names its own user, so the users may be left out.
            let users_optional = kind.is_some_and(|k| k.name == CONNECTION_STRING)
                && get("username").is_none()
                && get("usernames").is_none();
            if database && !users_optional {
                check_database_users(&mut report, strategy, get("username"), get("usernames"));
            }
            if is_certificate(service_type) {
                check_certificate(&mut report, type_name, &get);
            }
            if type_name == "aws-iam"
                && strategy == Strategy::Overlap
                && get("user_name").and_then(Json::as_str).is_none_or(|u| u.is_empty())
            {
                let pos = report.pos("/rotation");
                let path = format!("{base}.rotation.config.user_name");
                report.diagnostics.error(
                    file,
                    pos,
                    &path,
                    "is required: the IAM user whose access keys rotate".to_owned(),
                );
            }
        }
    }
}

/// A certificate's `rotation.config`: its names (required where the agent issues it), lifetime,
/// key type, endpoint and `renew_before`.
fn check_certificate<'j>(
    report: &mut Reporter<'_>,
    type_name: &str,
    get: &impl Fn(&str) -> Option<&'j Json>,
) {
    let names_ok = match get("names") {
        Some(Json::Array(list)) => {
            !list.is_empty() && list.iter().all(|n| n.as_str().is_some_and(|n| !n.is_empty()))
        }
        Some(Json::String(name)) => !name.is_empty(),
        Some(_) => false,
        None => type_name != "internal-ca-certificate",
    };
    if !names_ok {
        let message = "the certificate's names are required: a list of DNS names or IP addresses, e.g. names: [api.internal, 10.0.0.5]";
        match get("names") {
            Some(_) => report.at("config.names", message.to_owned()),
            None => {
                let pos = report.pos("/rotation");
                let path = format!("{}.rotation.config.names", report.base);
                report.diagnostics.error(report.file, pos, &path, message.to_owned());
            }
        }
    }
    if let Some(lifetime) = get("lifetime")
        && let Err(e) = lifetime
            .as_str()
            .map(crate::time::Duration::parse)
            .unwrap_or_else(|| crate::time::Duration::parse(&lifetime.to_string()))
    {
        report.at("config.lifetime", e.to_string());
    }
    if let Some(before) = get("renew_before")
        && let Err(e) = super::renewal::RenewBefore::parse(before.as_str().unwrap_or_default())
    {
        report.at("config.renew_before", e);
    }
    if let Some(key_type) = get("key_type")
        && !key_type.as_str().is_some_and(|k| super::renewal::KEY_TYPES.contains(&k))
    {
        report.at(
            "config.key_type",
            format!("key_type must be one of: {}", super::renewal::KEY_TYPES.join(", ")),
        );
    }
    if let Some(endpoint) = get("endpoint")
        && !endpoint.as_str().and_then(|e| e.rsplit_once(':')).is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
    {
        report
            .at("config.endpoint", "endpoint must be host:port, e.g. api.internal:443".to_owned());
    }
}

/// `immediate` and `overlap` change one named user; `two-key` needs two different users.
fn check_database_users(
    report: &mut Reporter<'_>,
    strategy: Strategy,
    username: Option<&Json>,
    usernames: Option<&Json>,
) {
    match strategy {
        Strategy::Immediate | Strategy::Overlap => match username {
            Some(Json::String(user)) if !user.is_empty() => {}
            Some(other) => report.at(
                "config.username",
                format!("expected the database user name as text, got {other}"),
            ),
            None => {
                let pos = report.pos("/rotation");
                let path = format!("{}.rotation.config.username", report.base);
                report.diagnostics.error(
                    report.file,
                    pos,
                    &path,
                    format!("is required: the database user whose password `{strategy}` changes"),
                );
            }
        },
        Strategy::TwoKey => {
            let users: Option<Vec<&str>> = usernames
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect());
            match users {
                Some(users) if users.len() == 2 && users[0] != users[1] && users.iter().all(|u| !u.is_empty()) => {}
                Some(users) if users.len() == 2 && users[0] == users[1] => {
                    report.at("config.usernames", format!("the two users must differ, both are {:?}", users[0]));
                }
                _ if usernames.is_some() => report.at(
                    "config.usernames",
                    "`two-key` needs exactly two database users that take turns, e.g. usernames: [app_a, app_b]".to_owned(),
                ),
                _ => {
                    let pos = report.pos("/rotation");
                    let path = format!("{}.rotation.config.usernames", report.base);
                    report.diagnostics.error(
                        report.file,
                        pos,
                        &path,
                        "`two-key` needs exactly two database users that take turns, e.g. usernames: [app_a, app_b]".to_owned(),
                    );
                }
            }
        }
        _ => {}
    }
}

/// The database users a variable's rotation changes (for conflict detection).
pub(super) fn target_users(item: &ResolvedSecret<'_>) -> Vec<String> {
    let Some(config) = item.secret.rotation.as_ref().map(|r| &r.config) else { return Vec::new() };
    let mut users = Vec::new();
    if let Some(user) = config.get("username").and_then(Json::as_str) {
        users.push(user.to_owned());
    }
    if let Some(list) = config.get("usernames").and_then(Json::as_array) {
        users.extend(list.iter().filter_map(Json::as_str).map(str::to_owned));
    }
    users
}
