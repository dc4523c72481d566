//! Reading the type-specific settings of stores and services against the field table.

use std::collections::BTreeMap;

use dsops_proto::domain::StoreRef;

use super::fields_table::{FieldKind, FieldSpec};
use crate::document::{Diagnostics, Fields, Node, ScalarKind, Value};
use crate::time::Duration;

/// Reads every setting of `fields` listed in `specs` (unknown keys were already reported by
/// [`Fields::read`]). Store references must name a store in `stores`.
pub(super) fn read_settings(
    fields: &Fields<'_>,
    specs: &[FieldSpec],
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, serde_json::Value> {
    let mut settings = BTreeMap::new();
    for spec in specs {
        let Some(node) = fields.get(spec.name) else {
            if spec.required && fields.node().get(spec.name).is_some() {
                fields.error(
                    spec.name,
                    format!("must not be empty: {}", expectation(spec.kind)),
                    diagnostics,
                );
            } else if spec.required {
                fields.missing(spec.name, expectation(spec.kind), diagnostics);
            }
            continue;
        };
        if let Some(value) = read_one(fields, spec, node, stores, diagnostics) {
            settings.insert(spec.name.to_owned(), value);
        }
    }
    settings
}

fn expectation(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "a text value",
        FieldKind::Host => "a host name or IP address",
        FieldKind::Port => "a port number from 1 to 65535",
        FieldKind::StoreEntry => "a store entry, store://<store>/<path>",
        FieldKind::StoreField => "a store value, store://<store>/<path>#<field>",
        FieldKind::Url => "an http:// or https:// URL",
        FieldKind::SecretUrl => "an https:// URL (http:// only to a loopback address)",
        FieldKind::Duration => "a duration such as 30s or 5m",
        FieldKind::TextList => "a list of text values",
        FieldKind::Command => "a command (text, or a list of arguments)",
        FieldKind::Bool => "true or false",
        FieldKind::Choice(_) => "one of the listed values",
    }
}

fn read_one(
    fields: &Fields<'_>,
    spec: &FieldSpec,
    node: &Node,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> Option<serde_json::Value> {
    let name = spec.name;
    let fail = |message: String, diagnostics: &mut Diagnostics| {
        diagnostics.error(fields.file(), node.pos, &fields.child(name), message);
        None
    };
    match spec.kind {
        FieldKind::Port => {
            fields.integer(name, 1..=65_535, diagnostics).map(serde_json::Value::from)
        }
        FieldKind::Bool => fields.boolean(name, diagnostics).map(serde_json::Value::from),
        FieldKind::TextList => {
            let list = fields.string_list(name, diagnostics)?;
            if list.is_empty() {
                return fail("must list at least one value".to_owned(), diagnostics);
            }
            Some(serde_json::Value::from(list))
        }
        FieldKind::Command => match &node.value {
            Value::Seq(_) => {
                let list = fields.string_list(name, diagnostics)?;
                if list.is_empty() {
                    return fail("the command is empty".to_owned(), diagnostics);
                }
                Some(serde_json::Value::from(list))
            }
            _ => {
                fields.required_string(name, "a command", diagnostics).map(serde_json::Value::from)
            }
        },
        FieldKind::Text
        | FieldKind::Host
        | FieldKind::Url
        | FieldKind::SecretUrl
        | FieldKind::Duration
        | FieldKind::StoreEntry
        | FieldKind::StoreField
        | FieldKind::Choice(_) => {
            if matches!(node.value, Value::Scalar { kind: ScalarKind::Bool, .. })
                && !matches!(spec.kind, FieldKind::Choice(_))
            {
                return fail(
                    format!("expected {}, found a boolean", expectation(spec.kind)),
                    diagnostics,
                );
            }
            let text = fields.required_string(name, expectation(spec.kind), diagnostics)?;
            match check_text(spec.kind, &text, stores) {
                Ok(text) => Some(serde_json::Value::from(text)),
                Err(message) => fail(message, diagnostics),
            }
        }
    }
}

/// Whether `host[:port]` names this host: `localhost`, `127.0.0.0/8` or `[::1]`.
fn loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a text setting; the error says what is wrong.
fn check_text(kind: FieldKind, text: &str, stores: &[&str]) -> Result<String, String> {
    match kind {
        FieldKind::Host => check_host(text)?,
        FieldKind::Url | FieldKind::SecretUrl => {
            let https = text.strip_prefix("https://");
            let rest = https.or_else(|| text.strip_prefix("http://"));
            let authority = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
            let valid =
                authority.is_some_and(|a| !a.is_empty()) && !text.chars().any(char::is_whitespace);
            if !valid {
                return Err(format!("{text:?} is not an http:// or https:// URL"));
            }
            if kind == FieldKind::SecretUrl {
                let authority = authority.unwrap_or_default();
                if authority.contains('@') {
                    return Err(format!(
                        "{text:?} carries credentials in the URL; put the signing secret in auth_store"
                    ));
                }
                if https.is_none() && !loopback_authority(authority) {
                    return Err(format!(
                        "{text:?} must be https://: secret values travel in its requests (http:// is accepted only to a loopback address)"
                    ));
                }
            }
        }
        FieldKind::Duration => {
            Duration::parse(text).map_err(|error| error.to_string())?;
        }
        FieldKind::StoreEntry => {
            check_store_reference(text, Some(false), stores)?;
        }
        FieldKind::StoreField => {
            check_store_reference(text, Some(true), stores)?;
        }
        FieldKind::Choice(choices) => {
            if !choices.contains(&text) {
                let mut message = format!("{text:?} is not one of: {}", choices.join(", "));
                if let Some(hint) = crate::document::suggest(text, choices.iter().copied()) {
                    message.push_str(&format!("; did you mean {hint:?}?"));
                }
                return Err(message);
            }
        }
        FieldKind::Text
        | FieldKind::Port
        | FieldKind::TextList
        | FieldKind::Command
        | FieldKind::Bool => {}
    }
    Ok(text.to_owned())
}

/// A host name (letters, digits, '-', '.'), an IPv4 address, or an IPv6 address (bare or in
/// brackets). Never a URL or `host:port`.
fn check_host(text: &str) -> Result<(), String> {
    if text.contains("://") {
        return Err(format!("expected a host name, not a URL: {text:?} (put the port in `port`)"));
    }
    let bracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'));
    if bracketed.unwrap_or(text).parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    if let Some((_, port)) = text.rsplit_once(':')
        && port.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!(
            "expected a host name without a port: {text:?} (put the port in `port`)"
        ));
    }
    let labels_ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if labels_ok { Ok(()) } else { Err(format!("{text:?} is not a host name or IP address")) }
}

/// Checks a store reference: its form, whether it names a field (`Some(true)`), a whole entry
/// (`Some(false)`) or either (`None`), and that its store is declared.
pub(super) fn check_store_reference(
    text: &str,
    field: Option<bool>,
    stores: &[&str],
) -> Result<StoreRef, String> {
    let reference = StoreRef::parse(text).map_err(|error| error.to_string())?;
    match (field, reference.field.is_some()) {
        (Some(false), true) => {
            return Err(format!(
                "{text:?} must name a whole entry, without a #field (the entry holds `user` and `password`)"
            ));
        }
        (Some(true), false) => {
            return Err(format!("{text:?} must name a field: store://<store>/<path>#<field>"));
        }
        _ => {}
    }
    if !stores.contains(&reference.store.as_str()) {
        return Err(unknown_store(&reference.store, stores));
    }
    Ok(reference)
}

/// The message for a reference to a store that `secretStores` does not define.
pub(super) fn unknown_store(name: &str, stores: &[&str]) -> String {
    let mut message = format!("unknown secret store {name:?}");
    match crate::document::suggest(name, stores.iter().copied()) {
        Some(hint) => message.push_str(&format!("; did you mean {hint:?}?")),
        None if stores.is_empty() => message.push_str("; `secretStores` defines none"),
        None => message.push_str(&format!("; `secretStores` defines: {}", stores.join(", "))),
    }
    message
}
