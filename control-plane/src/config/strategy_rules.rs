//! What each strategy needs from the variable, its service and its credential kind.

use serde_json::Value as Json;

use super::model::{SecretConfig, ServiceConfig};
use super::resolve::{ResolvedSecret, rotatable};
use crate::catalog::{CredentialKind, ServiceType, Strategy};
use crate::source::Diagnostics;

const CHARSETS: [&str; 7] =
    ["alphanumeric", "alpha", "numeric", "hex", "base64", "base64url", "ascii-printable"];

fn is_database(service_type: Option<&ServiceType>) -> bool {
    service_type.and_then(|t| t.metadata.category.as_deref()) == Some("database")
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
    let strategy_pos = secret.node.at_pointer("/rotation/strategy").pos;
    let config_pos = secret.node.at_pointer("/rotation/config").pos;
    let strategy_path = format!("{base}.rotation.strategy");
    let config = secret.rotation.as_ref().map(|r| &r.config);
    let get = |key: &str| config.and_then(|c| c.get(key));
    let mut error = |pos, path: &str, message: String| diagnostics.error(file, pos, path, message);
    let type_name = service_type.map(|t| t.metadata.name.as_str()).unwrap_or_default();

    if let Some(kind) = kind
        && strategy != Strategy::Random
        && !rotatable(kind)
    {
        error(
            strategy_pos,
            &strategy_path,
            format!(
                "credential kind {type_name}/{} cannot be created or rotated (capabilities: {:?})",
                kind.name, kind.capabilities
            ),
        );
    }
    match strategy {
        Strategy::Random => {
            if service.is_some() && type_name != "app-secret" {
                error(
                    strategy_pos,
                    &strategy_path,
                    format!(
                        "`random` generates a value with no target, but from.service points at a {type_name} service; remove from.service or choose immediate, two-key or overlap"
                    ),
                );
            }
            if let Some(length) = get("length") {
                match length.as_u64() {
                    Some(n) if (16..=4096).contains(&n) => {}
                    _ => error(
                        config_pos,
                        &format!("{base}.rotation.config.length"),
                        format!("length must be an integer from 16 to 4096, got {length}"),
                    ),
                }
            }
            if let Some(charset) = get("charset")
                && !charset.as_str().is_some_and(|c| CHARSETS.contains(&c))
            {
                error(
                    config_pos,
                    &format!("{base}.rotation.config.charset"),
                    format!("charset must be one of: {}", CHARSETS.join(", ")),
                );
            }
            return;
        }
        Strategy::Immediate | Strategy::TwoKey | Strategy::Overlap => {
            if service.is_none() {
                error(
                    secret.node.at_pointer("/from").pos,
                    &format!("{base}.from.service"),
                    format!(
                        "the `{strategy}` strategy changes a credential on a service: set from.service to svc://<service>?kind=<kind>"
                    ),
                );
                return;
            }
        }
        Strategy::Script => {
            if type_name != "script" && get("command").is_none() {
                error(strategy_pos, &strategy_path, "the `script` strategy needs a service of type script, or rotation.config.command".to_owned());
            }
            return;
        }
        Strategy::Webhook => {
            if type_name != "webhook" && get("url").is_none() {
                error(strategy_pos, &strategy_path, "the `webhook` strategy needs a service of type webhook, or rotation.config.url".to_owned());
            }
            return;
        }
    }
    if strategy == Strategy::Overlap
        && let Some(kind) = kind
    {
        let max = kind.constraints.as_ref().and_then(|c| c.max_active);
        if !max.is_some_and(|m| m.allows_two()) {
            let shown = max.map_or("not declared".to_owned(), |m| m.to_string());
            error(
                strategy_pos,
                &strategy_path,
                format!(
                    "`overlap` needs two valid credentials at once, but {type_name}/{} allows maxActive {shown}; use two-key (two users taking turns) or immediate",
                    kind.name
                ),
            );
        }
    }
    if !is_database(service_type) {
        return;
    }
    match strategy {
        Strategy::Immediate => match get("username") {
            Some(Json::String(user)) if !user.is_empty() => {}
            Some(other) => error(
                config_pos,
                &format!("{base}.rotation.config.username"),
                format!("expected the database user name as text, got {other}"),
            ),
            None => error(
                secret.node.at_pointer("/rotation").pos,
                &format!("{base}.rotation.config.username"),
                "is required: the database user whose password `immediate` changes".to_owned(),
            ),
        },
        Strategy::TwoKey => {
            let users: Option<Vec<&str>> = get("usernames")
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(Json::as_str).collect());
            match users {
                Some(users) if users.len() == 2 && users[0] != users[1] && users.iter().all(|u| !u.is_empty()) => {}
                Some(users) if users.len() == 2 && users[0] == users[1] => {
                    error(config_pos, &format!("{base}.rotation.config.usernames"), format!("the two users must differ, both are {:?}", users[0]));
                }
                _ => error(
                    if get("usernames").is_some() { config_pos } else { secret.node.at_pointer("/rotation").pos },
                    &format!("{base}.rotation.config.usernames"),
                    "`two-key` needs exactly two database users that take turns, e.g. usernames: [app_a, app_b]".to_owned(),
                ),
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
