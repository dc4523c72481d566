//! `notifications` in dsops.yaml: the channels dsops can deliver through and the names an
//! installation maps to them, and how a notification target resolves.
//!
//! ```yaml
//! notifications:
//!   channels:
//!     payments-slack: { type: slack, channel: "#payments", segment: seg-a, credential: "store://vault/notify/slack#url" }
//!     ops-hook:       { type: webhook, url: "https://hooks.internal/dsops", credential: "store://vault/notify/hook#secret" }
//!     payments-pd:    { type: pagerduty, credential: "store://vault/notify/pd#routing_key" }
//!     mail:           { type: email, host: smtp.internal, port: 587, from: dsops@example.com, username: dsops, credential: "store://vault/notify/smtp#password" }
//!   targets:
//!     payments-team: ["slack:#payments", "email:payments@example.com"]
//!     oncall: ["pagerduty:payments-pd"]
//! ```
//!
//! A target is `slack:#channel` (the Slack channel of that name, else the one without a name),
//! `email:<address>` (through the email channel), `webhook:<channel>`, `pagerduty:<channel>`,
//! `log:<name>`, or a plain name: a `targets` entry here, else a catalog principal (through its
//! `contact`). Catalogs use plain team names, so a name that resolves to nothing is a warning
//! naming the file and line, never an error. Channel credentials are store references: the
//! control plane never holds them; an agent of the channel's segment delivers.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::document::{Diagnostics, Fields, Node, Pos, Value};

/// The kinds of channel.
pub const CHANNEL_TYPES: [&str; 4] = ["slack", "webhook", "pagerduty", "email"];
/// The kinds of target.
pub const TARGET_KINDS: [&str; 5] = ["slack", "email", "webhook", "pagerduty", "log"];

/// `notifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NotificationsConfig {
    /// Channels by name.
    pub channels: BTreeMap<String, Channel>,
    /// Installation names mapped to targets.
    pub targets: BTreeMap<String, Vec<String>>,
}

/// `notifications.channels.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// `slack`, `webhook`, `pagerduty` or `email`.
    pub kind: String,
    /// The segment whose agents deliver (`default` if not given).
    pub segment: String,
    /// Where the credential lives: the Slack webhook URL, the webhook signing secret, the
    /// PagerDuty routing key, the SMTP password.
    pub credential: Option<String>,
    /// For `webhook`: the endpoint; for `pagerduty`: the Events API (its default if absent).
    pub url: Option<String>,
    /// For `slack`: the channel its webhook posts to (`#payments`), if it is for one.
    pub channel: Option<String>,
    /// For `email`: the SMTP server.
    pub host: Option<String>,
    /// For `email`: its port (587 if absent).
    pub port: Option<u16>,
    /// For `email`: the sender.
    pub from: Option<String>,
    /// For `email`: the user to authenticate as (with `credential`).
    pub username: Option<String>,
    /// For `webhook` and `email`: a PEM file on the agent's host with the CAs the server's
    /// certificate must chain to (instead of the public web roots).
    pub ca_file: Option<String>,
}

/// Reads `notifications` (absent: none). Channel credentials must name a declared store and a
/// field; targets must be `<kind>:<rest>` or plain names.
pub(super) fn parse(
    top: &Fields<'_>,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> NotificationsConfig {
    let mut config = NotificationsConfig::default();
    let Some(node) = top.get("notifications") else { return config };
    let Some(fields) =
        Fields::read(node, top.file(), "notifications", &["channels", "targets"], diagnostics)
    else {
        return config;
    };
    for (key, node) in fields.entries("channels", diagnostics).unwrap_or_default() {
        let name = key.scalar_text().unwrap_or_default();
        let path = format!("notifications.channels.{name}");
        if let Err(problem) = dsops_proto::domain::names::check_config_name(name, "channel") {
            diagnostics.error(top.file(), key.pos, &path, problem);
            continue;
        }
        if let Some(channel) = parse_channel(node, top.file(), &path, stores, diagnostics) {
            config.channels.insert(name.to_owned(), channel);
        }
    }
    for (key, node) in fields.entries("targets", diagnostics).unwrap_or_default() {
        let name = key.scalar_text().unwrap_or_default();
        let path = format!("notifications.targets.{name}");
        if let Err(problem) = dsops_proto::domain::names::check_config_name(name, "target") {
            diagnostics.error(top.file(), key.pos, &path, problem);
            continue;
        }
        let Value::Seq(items) = &node.value else {
            diagnostics.error(
                top.file(),
                node.pos,
                &path,
                format!("expected a list of targets, found {}", node.describe()),
            );
            continue;
        };
        let mut targets = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item.scalar_text().map(check_target) {
                Some(Ok(target)) => targets.push(target),
                Some(Err(problem)) => {
                    diagnostics.error(top.file(), item.pos, &format!("{path}[{index}]"), problem)
                }
                None => diagnostics.error(
                    top.file(),
                    item.pos,
                    &format!("{path}[{index}]"),
                    format!("expected a target, found {}", item.describe()),
                ),
            }
        }
        config.targets.insert(name.to_owned(), targets);
    }
    config
}

/// `<kind>://<rest>` (`slack://security-ops`) as the target `<kind>:<rest>`; anything else as is.
fn uri_as_target(text: &str) -> std::borrow::Cow<'_, str> {
    match text.split_once("://") {
        Some((kind, rest)) if TARGET_KINDS.contains(&kind) => format!("{kind}:{rest}").into(),
        _ => text.into(),
    }
}

/// Checks a target's form: `<kind>:<rest>` with a known kind, or a plain name; returns it as
/// dsops keeps it (the URI form `<kind>://<rest>`, as in `slack://security-ops`, becomes
/// `<kind>:<rest>`).
pub fn check_target(text: &str) -> Result<String, String> {
    let text = uri_as_target(text);
    let text = text.as_ref();
    match text.split_once(':') {
        Some((kind, rest)) if TARGET_KINDS.contains(&kind) && !rest.trim().is_empty() => {
            Ok(text.to_owned())
        }
        Some((kind, _)) => Err(format!(
            "{text:?} is not a notification target: {kind:?} is not one of {} (or use a plain name)",
            TARGET_KINDS.join(", ")
        )),
        None => dsops_proto::domain::names::check_catalog_name(text, "target")
            .map(|()| text.to_owned())
            .map_err(|_| {
                let hint = if text.contains('@') {
                    format!("; did you mean \"email:{text}\"?")
                } else if text.starts_with('#') {
                    format!("; did you mean \"slack:{text}\"?")
                } else {
                    String::new()
                };
                format!(
                    "{text:?} is not a notification target: expected <kind>:<address> (kind one of {}) or a plain name (letters, digits, '_', '.', '-'){hint}",
                    TARGET_KINDS.join(", ")
                )
            }),
    }
}

fn parse_channel(
    node: &Node,
    file: &str,
    path: &str,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> Option<Channel> {
    let keys = [
        "type",
        "segment",
        "credential",
        "url",
        "channel",
        "host",
        "port",
        "from",
        "username",
        "description",
    ];
    let fields = Fields::read(node, file, path, &keys, diagnostics)?;
    let Some(kind) = fields.string("type", diagnostics) else {
        fields.missing("type", "one of slack, webhook, pagerduty, email", diagnostics);
        return None;
    };
    if !CHANNEL_TYPES.contains(&kind.as_str()) {
        fields.error(
            "type",
            format!("{kind:?} is not one of: {}", CHANNEL_TYPES.join(", ")),
            diagnostics,
        );
        return None;
    }
    let segment = fields.string("segment", diagnostics).unwrap_or_else(|| "default".to_owned());
    if let Err(problem) = dsops_proto::domain::names::check_config_name(&segment, "segment") {
        fields.error("segment", problem, diagnostics);
    }
    let credential = fields.string("credential", diagnostics).and_then(|text| {
        match super::settings::check_store_reference(&text, Some(true), stores) {
            Ok(reference) => Some(reference.to_string()),
            Err(problem) => {
                fields.error("credential", problem, diagnostics);
                None
            }
        }
    });
    let port = fields.integer("port", 1..=65_535, diagnostics).map(|p| p as u16);
    let channel = Channel {
        kind: kind.clone(),
        segment,
        credential,
        url: fields.string("url", diagnostics),
        channel: fields.string("channel", diagnostics),
        host: fields.string("host", diagnostics),
        port,
        from: fields.string("from", diagnostics),
        username: fields.string("username", diagnostics),
        ca_file: fields.string("ca_file", diagnostics),
    };
    let mut need = |key: &str, present: bool, what: &str| {
        if !present {
            fields.missing(key, what, diagnostics);
        }
    };
    match kind.as_str() {
        "slack" => need(
            "credential",
            fields.get("credential").is_some(),
            "the store field holding the incoming webhook URL",
        ),
        "pagerduty" => need(
            "credential",
            fields.get("credential").is_some(),
            "the store field holding the Events API v2 routing key",
        ),
        "webhook" => {
            need("url", channel.url.is_some(), "the endpoint (https://, or http:// on loopback)");
            need(
                "credential",
                fields.get("credential").is_some(),
                "the store field holding the signing secret",
            );
        }
        _ => {
            need("host", channel.host.is_some(), "the SMTP server's host name");
            need("from", channel.from.is_some(), "the sender's address");
            if channel.username.is_some() {
                need(
                    "credential",
                    fields.get("credential").is_some(),
                    "the store field holding the SMTP password",
                );
            }
        }
    }
    if let Some(url) = &channel.url
        && !(url.starts_with("https://")
            || url.starts_with("http://127.0.0.1")
            || url.starts_with("http://localhost")
            || url.starts_with("http://[::1]"))
    {
        fields.error(
            "url",
            format!("{url:?} must be https:// (or http:// on loopback)"),
            diagnostics,
        );
    }
    if let Some(slack) = &channel.channel
        && !slack.starts_with('#')
    {
        fields.error(
            "channel",
            format!("{slack:?} is not a Slack channel; expected #name"),
            diagnostics,
        );
    }
    Some(channel)
}

/// Where a target ends up: the channels it resolves to, each with the address it carries
/// (`email` recipients), or why it resolves to nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The channel's name (`log` for `log:` targets).
    pub channel: String,
    /// The address within it (an email recipient, a Slack channel), if any.
    pub address: Option<String>,
}

/// Resolves a target to its deliveries; `Err` says why it resolves to nothing. Plain names go
/// through `targets`, then catalog principals (their `contact`), at most 4 levels deep.
pub fn resolve_target(
    target: &str,
    notifications: &NotificationsConfig,
    catalog: &Catalog,
) -> Result<Vec<Delivery>, String> {
    resolve_depth(target, notifications, catalog, 0)
}

fn resolve_depth(
    target: &str,
    config: &NotificationsConfig,
    catalog: &Catalog,
    depth: usize,
) -> Result<Vec<Delivery>, String> {
    if depth > 4 {
        return Err(format!("{target:?} is nested more than 4 names deep"));
    }
    // The URI form may come from a catalog policy, which `check_target` did not read.
    let target = uri_as_target(target);
    let target = target.as_ref();
    let by_kind = |kind: &'static str| config.channels.iter().filter(move |(_, c)| c.kind == kind);
    match target.split_once(':') {
        Some(("log", name)) => {
            Ok(vec![Delivery { channel: "log".into(), address: Some(name.into()) }])
        }
        Some(("slack", name)) => {
            let named = by_kind("slack").find(|(_, c)| c.channel.as_deref() == Some(name));
            let default = by_kind("slack").find(|(_, c)| c.channel.is_none());
            named.or(default).map(|(channel, _)| {
                vec![Delivery { channel: channel.clone(), address: Some(name.to_owned()) }]
            }).ok_or_else(|| format!("no Slack channel under notifications.channels posts to {name} (and none without a channel)"))
        }
        Some(("email", address)) => by_kind("email")
            .next()
            .map(|(channel, _)| {
                vec![Delivery { channel: channel.clone(), address: Some(address.to_owned()) }]
            })
            .ok_or_else(|| "no email channel under notifications.channels".to_owned()),
        Some((kind @ ("webhook" | "pagerduty"), name)) => match config.channels.get(name) {
            Some(channel) if channel.kind == kind => {
                Ok(vec![Delivery { channel: name.to_owned(), address: None }])
            }
            Some(channel) => Err(format!(
                "notifications.channels.{name} is a {} channel, not {kind}",
                channel.kind
            )),
            None => Err(format!("no channel {name:?} under notifications.channels")),
        },
        Some((kind, _)) => Err(format!("{kind:?} is not a kind of target")),
        None => {
            if let Some(targets) = config.targets.get(target) {
                let mut all = Vec::new();
                for inner in targets {
                    all.extend(resolve_depth(inner, config, catalog, depth + 1)?);
                }
                return Ok(all);
            }
            let Some(principal) = catalog.principals.get(target) else {
                return Err(format!(
                    "{target:?} is neither a name under notifications.targets nor a catalog principal"
                ));
            };
            let contact = principal.value.spec.contact.clone().unwrap_or_default();
            let mut all = Vec::new();
            let mut problems = Vec::new();
            for derived in [
                contact.slack.map(|s| format!("slack:{s}")),
                contact
                    .email
                    .or_else(|| principal.value.spec.email.clone())
                    .map(|e| format!("email:{e}")),
                contact.oncall.map(|o| format!("pagerduty:{o}")),
            ]
            .into_iter()
            .flatten()
            {
                match resolve_depth(&derived, config, catalog, depth + 1) {
                    Ok(found) => all.extend(found),
                    Err(problem) => problems.push(problem),
                }
            }
            if all.is_empty() {
                Err(format!(
                    "principal {target:?} has no contact that resolves: {}",
                    if problems.is_empty() {
                        "it has no contact".to_owned()
                    } else {
                        problems.join("; ")
                    }
                ))
            } else {
                Ok(all)
            }
        }
    }
}

/// Warns (file and line) about every target, in dsops.yaml and in the catalog rotation policies
/// the configuration uses, that resolves to no channel.
pub(super) fn warn_unresolved(
    root: &Node,
    file: &str,
    config: &super::Config,
    catalog: &Catalog,
    diagnostics: &mut Diagnostics,
) {
    let notifications = &config.notifications;
    // Without any channel every target reaches nobody: one warning says so, not one per target.
    let no_channels = notifications.channels.is_empty();
    let mut unreached = Vec::new();
    let mut check = |target: &str, file: &str, pos: Pos, path: &str| {
        if check_target(target).is_err() {
            return; // already an error where it was read
        }
        if no_channels {
            unreached.push(target.to_owned());
        } else if let Err(why) = resolve_target(target, notifications, catalog) {
            diagnostics.warning(
                file,
                pos,
                path,
                format!("notification target {target:?} resolves to no channel: {why}"),
            );
        }
    };
    let defaults = &config.rotation.defaults.notification;
    for (key, list) in [("on_success", &defaults.on_success), ("on_failure", &defaults.on_failure)]
    {
        for (index, target) in list.iter().enumerate() {
            let pointer = format!("/rotation/defaults/notification/{key}/{index}");
            check(
                target,
                file,
                root.at_pointer(&pointer).pos,
                &format!("rotation.defaults.notification.{key}[{index}]"),
            );
        }
    }
    for (env, rule) in &config.rotation.approvals {
        for (index, target) in rule.notify.iter().enumerate() {
            let pointer = format!("/rotation/approvals/{env}/notify/{index}");
            let path = format!("rotation.approvals.{env}.notify[{index}]");
            check(target, file, root.at_pointer(&pointer).pos, &path);
        }
    }
    for (name, list) in &notifications.targets {
        for (index, target) in list.iter().enumerate() {
            let pointer = format!("/notifications/targets/{name}/{index}");
            check(
                target,
                file,
                root.at_pointer(&pointer).pos,
                &format!("notifications.targets.{name}[{index}]"),
            );
        }
    }
    let used: std::collections::BTreeSet<&str> = config
        .envs
        .values()
        .flat_map(|env| env.secrets.values())
        .filter_map(|secret| secret.rotation.as_ref()?.policy.as_deref())
        .collect();
    let policies =
        catalog.rotation_policies.iter().filter(|(name, _)| used.contains(name.as_str()));
    for (_, entry) in policies {
        let Some(policy_notifications) = &entry.value.spec.notifications else { continue };
        let lists = [
            ("onSuccess", &policy_notifications.on_success),
            ("onFailure", &policy_notifications.on_failure),
        ];
        let before = policy_notifications.before_expiry.as_ref().map(|b| &b.targets);
        for (key, list) in lists.into_iter().chain(before.map(|b| ("beforeExpiry/targets", b))) {
            for (index, target) in list.iter().enumerate() {
                let pointer = format!("/spec/notifications/{key}/{index}");
                let path = format!("spec.notifications.{}[{index}]", key.replace('/', "."));
                check(target, &entry.file, entry.pos(&pointer), &path);
            }
        }
    }
    if !unreached.is_empty() {
        unreached.sort();
        unreached.dedup();
        diagnostics.warning(
            file,
            root.pos,
            "notifications",
            format!(
                "no channel is configured under notifications.channels, so these targets reach nobody: {}",
                unreached.join(", ")
            ),
        );
    }
}
