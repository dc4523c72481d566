//! `dsops.yaml` text → [`Config`], reporting every structural problem at once. Checks that need
//! the catalog happen afterwards, in `resolve`.

use std::collections::BTreeMap;
use std::path::Path;

use dsops_proto::domain::{ServiceRef, StoreRef};

use super::fields_table::{
    COMMON_KEYS, STORE_TYPES, service_fields, store_fields, store_type_name,
};
use super::model::*;
use super::settings::{check_store_reference, read_settings, unknown_store};
use crate::catalog::Strategy;
use dsops_proto::domain::names::{check_config_name, check_variable_name};

use crate::document::{Diagnostics, Fields, Node, unknown_name};
use crate::time::{Duration, Schedule};

const TOP_KEYS: [&str; 8] = [
    "version",
    "secretStores",
    "services",
    "rotation",
    "envs",
    "notifications",
    "health",
    "policies",
];
const SECRET_KEYS: [&str; 4] = ["from", "rotation", "description", "promotion"];
const FROM_KEYS: [&str; 2] = ["store", "service"];
const SECRET_ROTATION_KEYS: [&str; 4] = ["policy", "strategy", "schedule", "config"];

/// Reads a parsed document as a configuration. `base_dir` resolves a relative `dataDir`.
pub fn parse_config(
    root: &Node,
    file: &str,
    base_dir: &Path,
    diagnostics: &mut Diagnostics,
) -> Option<Config> {
    let top = Fields::read(root, file, "", &TOP_KEYS, diagnostics)?;
    let version = match top.get("version") {
        None => {
            top.missing("version", "the configuration format version, 1", diagnostics);
            None
        }
        Some(_) => match top.integer("version", i64::MIN..=i64::MAX, diagnostics) {
            Some(1) => Some(1),
            Some(other) => {
                top.error(
                    "version",
                    format!("unsupported version {other}; this dsops reads version 1"),
                    diagnostics,
                );
                None
            }
            None => None,
        },
    };
    // References are checked against every *declared* name, so a store or service with an error
    // of its own does not also make each reference to it an "unknown" error.
    let store_names = declared(top.get("secretStores"));
    let secret_stores = parse_stores(&top, &store_names, diagnostics);
    let services = parse_services(&top, &store_names, diagnostics);
    let health = super::promotion::parse_health(&top, &services, diagnostics);
    let policies = super::enforce::parse_policies(&top, &declared(top.get("envs")), diagnostics);
    let rotation = parse_rotation(&top, base_dir, &health, &policies, diagnostics);
    let envs = parse_envs(&top, &store_names, diagnostics);
    let notifications = super::notify::parse(&top, &store_names, diagnostics);
    let config = Config {
        file: file.to_owned(),
        version: version.unwrap_or(1),
        secret_stores,
        services,
        rotation,
        envs,
        notifications,
        health,
        policies,
        lines: Default::default(),
    };
    super::promotion::check_groups(&config, diagnostics);
    Some(config)
}

/// The keys of an optional mapping (empty for anything else).
pub(super) fn declared(node: Option<&Node>) -> Vec<&str> {
    node.map(map_keys).unwrap_or_default()
}

/// Checks a user-chosen name (store, service, environment).
pub(super) fn check_name(
    key: &Node,
    file: &str,
    path: &str,
    what: &str,
    diagnostics: &mut Diagnostics,
) -> Option<String> {
    let name = key.scalar_text().unwrap_or_default();
    match check_config_name(name, what) {
        Ok(()) => Some(name.to_owned()),
        Err(message) => {
            diagnostics.error(file, key.pos, path, message);
            None
        }
    }
}

/// Reads the keys every store and service has besides its type's settings.
fn read_common(fields: &Fields<'_>, diagnostics: &mut Diagnostics) -> Option<String> {
    fields.string("description", diagnostics);
    let segment = fields.string("segment", diagnostics)?;
    match check_config_name(&segment, "segment") {
        Ok(()) => Some(segment),
        Err(message) => {
            fields.error("segment", message, diagnostics);
            None
        }
    }
}

fn parse_stores(
    top: &Fields<'_>,
    declared_stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, StoreConfig> {
    let mut stores = BTreeMap::new();
    for (key, node) in top.entries("secretStores", diagnostics).unwrap_or_default() {
        let path = top.child("secretStores");
        let path = format!("{path}.{}", key.scalar_text().unwrap_or_default());
        let Some(name) = check_name(key, top.file(), &path, "store", diagnostics) else { continue };
        let type_name = node.get("type").and_then(Node::scalar_text).unwrap_or_default().to_owned();
        let specs = store_fields(&type_name);
        // With an unknown type, only the type is reported: its fields cannot be judged.
        let mut allowed: Vec<&str> = COMMON_KEYS.to_vec();
        match specs {
            Some(specs) => allowed.extend(specs.iter().map(|s| s.name)),
            None => allowed.extend(map_keys(node)),
        }
        let Some(fields) = Fields::read(node, top.file(), &path, &allowed, diagnostics) else {
            continue;
        };
        let known: Vec<&str> = STORE_TYPES.iter().map(|(n, _)| *n).collect();
        let Some(store_type) = fields.required_string(
            "type",
            &format!("the store type, one of: {}", known.join(", ")),
            diagnostics,
        ) else {
            continue;
        };
        let Some(specs) = specs else {
            fields.error(
                "type",
                unknown_name("store type", &store_type, &known, None),
                diagnostics,
            );
            continue;
        };
        let store_type = store_type_name(&store_type).to_owned();
        let segment = read_common(&fields, diagnostics);
        let settings = read_settings(&fields, specs, declared_stores, diagnostics);
        stores.insert(name.clone(), StoreConfig { name, store_type, segment, settings });
    }
    stores
}

fn parse_services(
    top: &Fields<'_>,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, ServiceConfig> {
    let mut services = BTreeMap::new();
    for (key, node) in top.entries("services", diagnostics).unwrap_or_default() {
        let path = format!("{}.{}", top.child("services"), key.scalar_text().unwrap_or_default());
        let Some(name) = check_name(key, top.file(), &path, "service", diagnostics) else {
            continue;
        };
        let type_name = node.get("type").and_then(Node::scalar_text).unwrap_or_default().to_owned();
        let specs = service_fields(&type_name);
        let fields = match specs {
            Some(specs) => {
                let mut allowed: Vec<&str> = COMMON_KEYS.to_vec();
                allowed.push("rate_limit");
                allowed.extend(specs.iter().map(|s| s.name));
                Fields::read(node, top.file(), &path, &allowed, diagnostics)
            }
            // A type dsops has no adapter for (from a user catalog): any settings, checked later
            // against the catalog.
            None => Fields::read(node, top.file(), &path, &map_keys(node), diagnostics),
        };
        let Some(fields) = fields else { continue };
        let Some(service_type) = fields.required_string(
            "type",
            "a service type from the catalog, e.g. postgresql",
            diagnostics,
        ) else {
            continue;
        };
        let segment = read_common(&fields, diagnostics);
        let rate_limit = fields.string("rate_limit", diagnostics).filter(|text| {
            let parsed = crate::time::RateLimit::parse(text);
            if let Err(message) = &parsed {
                fields.error("rate_limit", message.clone(), diagnostics);
            }
            parsed.is_ok()
        });
        let settings = match specs {
            Some(specs) => read_settings(&fields, specs, stores, diagnostics),
            None => {
                // No adapter, so no field table: still check every `*_store` reference.
                for key in map_keys(node).into_iter().filter(|key| key.ends_with("_store")) {
                    if let Some(text) = fields.string(key, diagnostics)
                        && let Err(message) = check_store_reference(&text, None, stores)
                    {
                        fields.error(key, message, diagnostics);
                    }
                }
                match node.to_json() {
                    serde_json::Value::Object(map) => map
                        .into_iter()
                        .filter(|(k, _)| !COMMON_KEYS.contains(&k.as_str()) && k != "rate_limit")
                        .collect(),
                    _ => BTreeMap::new(),
                }
            }
        };
        let admin_store = settings
            .get("admin_store")
            .and_then(|v| v.as_str())
            .and_then(|s| StoreRef::parse(s).ok());
        services.insert(
            name.clone(),
            ServiceConfig {
                name,
                service_type,
                segment,
                admin_store,
                settings,
                rate_limit,
                node: node.clone(),
            },
        );
    }
    services
}

/// The keys of a mapping node (empty for anything else).
fn map_keys(node: &Node) -> Vec<&str> {
    match &node.value {
        crate::document::Value::Map(entries) => {
            entries.iter().filter_map(|(k, _)| k.scalar_text()).collect()
        }
        _ => Vec::new(),
    }
}

fn parse_rotation(
    top: &Fields<'_>,
    base_dir: &Path,
    health: &BTreeMap<String, super::promotion::HealthCheck>,
    policies: &BTreeMap<String, super::enforce::EnforcePolicy>,
    diagnostics: &mut Diagnostics,
) -> RotationConfig {
    let mut rotation = RotationConfig::default();
    let Some(node) = top.get("rotation") else { return rotation };
    let Some(fields) = Fields::read(
        node,
        top.file(),
        "rotation",
        &["dataDir", "defaults", "approvals", "promotion", "enforce", "blackouts"],
        diagnostics,
    ) else {
        return rotation;
    };
    if let Some(dir) = fields.string("dataDir", diagnostics) {
        if dir.trim().is_empty() {
            fields.error("dataDir", "must not be empty", diagnostics);
        } else {
            let written = std::path::PathBuf::from(&dir);
            let resolved = if written.is_absolute() || base_dir == Path::new(".") {
                written
            } else {
                base_dir.join(written)
            };
            rotation.data_dir = Some(resolved);
        }
    }
    rotation.approvals = super::approvals::parse_approvals(&fields, top.get("envs"), diagnostics);
    // A declared policy with an error of its own is left out (it is not also unknown); other
    // names may be catalog policies, checked once the catalog is loaded.
    let policy_names = declared(top.get("policies"));
    for name in fields.string_list("enforce", diagnostics).unwrap_or_default() {
        if !policy_names.contains(&name.as_str()) || policies.contains_key(&name) {
            rotation.enforce.push(name);
        }
    }
    rotation.blackouts =
        super::calendar::parse_blackouts(&fields, &declared(top.get("envs")), diagnostics);
    let health_names: Vec<&str> = health.keys().map(String::as_str).collect();
    rotation.promotion = super::promotion::parse_promotion(
        &fields,
        &declared(top.get("envs")),
        &health_names,
        diagnostics,
    );
    let Some(defaults) = fields.get("defaults") else { return rotation };
    let Some(defaults) = Fields::read(
        defaults,
        top.file(),
        "rotation.defaults",
        &["schedule", "grace_period", "notification", "jitter"],
        diagnostics,
    ) else {
        return rotation;
    };
    rotation.defaults.schedule = read_schedule(&defaults, diagnostics);
    rotation.defaults.jitter = super::calendar::parse_jitter(&defaults, diagnostics);
    if let Some(text) = defaults.string("grace_period", diagnostics) {
        match Duration::parse(&text) {
            Ok(duration) => rotation.defaults.grace_period = Some(duration),
            Err(error) => defaults.error("grace_period", error.to_string(), diagnostics),
        }
    }
    match defaults.get("notification").map(|n| &n.value) {
        // `notification: slack://security-ops` (or a list of targets): told of every outcome.
        Some(crate::document::Value::Scalar { .. }) => {
            let targets = defaults
                .string("notification", diagnostics)
                .and_then(|t| match super::notify::check_target(&t) {
                    Ok(target) => Some(vec![target]),
                    Err(problem) => {
                        defaults.error("notification", problem, diagnostics);
                        None
                    }
                })
                .unwrap_or_default();
            rotation.defaults.notification =
                Notification { on_success: targets.clone(), on_failure: targets };
        }
        Some(crate::document::Value::Seq(_)) => {
            let targets = read_targets(&defaults, "notification", diagnostics);
            rotation.defaults.notification =
                Notification { on_success: targets.clone(), on_failure: targets };
        }
        Some(_) => {
            if let Some(notification) = defaults.get("notification").and_then(|node| {
                Fields::read(
                    node,
                    top.file(),
                    "rotation.defaults.notification",
                    &["on_success", "on_failure"],
                    diagnostics,
                )
            }) {
                rotation.defaults.notification = Notification {
                    on_success: read_targets(&notification, "on_success", diagnostics),
                    on_failure: read_targets(&notification, "on_failure", diagnostics),
                };
            }
        }
        None => {}
    }
    rotation
}

/// A list of notification targets (`<kind>:<rest>` or plain names; whether each resolves to a
/// channel is a warning, checked once the catalog is loaded).
pub(super) fn read_targets(
    fields: &Fields<'_>,
    key: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<String> {
    let mut targets = fields.string_list(key, diagnostics).unwrap_or_default();
    for (index, target) in targets.iter_mut().enumerate() {
        match super::notify::check_target(target) {
            Ok(kept) => *target = kept,
            Err(problem) => {
                let pos = match fields.get(key).map(|n| &n.value) {
                    Some(crate::document::Value::Seq(items)) => items[index].pos,
                    _ => fields.pos(),
                };
                diagnostics.error(
                    fields.file(),
                    pos,
                    &format!("{}[{index}]", fields.child(key)),
                    problem,
                );
            }
        }
    }
    targets
}

fn read_schedule(fields: &Fields<'_>, diagnostics: &mut Diagnostics) -> Option<Schedule> {
    let text = fields.string("schedule", diagnostics)?;
    match Schedule::parse(&text) {
        Ok(schedule) => Some(schedule),
        Err(error) => {
            fields.error("schedule", error.to_string(), diagnostics);
            None
        }
    }
}

fn parse_envs(
    top: &Fields<'_>,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, EnvConfig> {
    let mut envs = BTreeMap::new();
    for (key, node) in top.entries("envs", diagnostics).unwrap_or_default() {
        let path = format!("envs.{}", key.scalar_text().unwrap_or_default());
        let Some(env) = check_name(key, top.file(), &path, "environment", diagnostics) else {
            continue;
        };
        let crate::document::Value::Map(vars) = &node.value else {
            diagnostics.error(
                top.file(),
                node.pos,
                &path,
                format!("expected a mapping of variable names, found {}", node.describe()),
            );
            continue;
        };
        let mut secrets = BTreeMap::new();
        for (var, spec) in vars {
            let name = var.scalar_text().unwrap_or_default();
            let var_path = format!("{path}.{name}");
            if let Err(message) = check_variable_name(name) {
                diagnostics.error(top.file(), var.pos, &var_path, message);
                continue;
            }
            if let Some(secret) =
                parse_secret(spec, top.file(), &env, name, &var_path, stores, diagnostics)
            {
                secrets.insert(name.to_owned(), secret);
            }
        }
        envs.insert(env.clone(), EnvConfig { name: env, secrets });
    }
    envs
}

#[allow(clippy::too_many_arguments)]
fn parse_secret(
    node: &Node,
    file: &str,
    env: &str,
    key: &str,
    path: &str,
    stores: &[&str],
    diagnostics: &mut Diagnostics,
) -> Option<SecretConfig> {
    // A variable with any structural error is left out, so later checks do not pile further
    // errors on top of the first one.
    let errors_before = diagnostics.error_count();
    let fields = Fields::read(node, file, path, &SECRET_KEYS, diagnostics)?;
    let Some(from_node) = fields.get("from") else {
        fields.missing(
            "from",
            "where the value lives: from: { store: \"store://<store>/<path>#<field>\" }",
            diagnostics,
        );
        return None;
    };
    let from = Fields::read(from_node, file, &fields.child("from"), &FROM_KEYS, diagnostics)?;
    let store = from
        .required_string("store", "store://<store>/<path>#<field>", diagnostics)
        .and_then(|text| match StoreRef::parse(&text) {
            Ok(reference) if !stores.contains(&reference.store.as_str()) => {
                from.error("store", unknown_store(&reference.store, stores), diagnostics);
                None
            }
            Ok(reference) => Some(reference),
            Err(error) => {
                from.error("store", error.to_string(), diagnostics);
                None
            }
        });
    let service = match from.string("service", diagnostics) {
        None => None,
        Some(text) => match ServiceRef::parse(&text) {
            Ok(reference) if reference.kind.is_none() => {
                from.error(
                    "service",
                    format!("{text:?} must name a credential kind: svc://<service>?kind=<kind>"),
                    diagnostics,
                );
                None
            }
            // A name not under `services` may be a catalog instance's id: judged once the
            // catalog is loaded (`instances::add_catalog_services`).
            Ok(reference) => Some(reference),
            Err(error) => {
                from.error("service", error.to_string(), diagnostics);
                None
            }
        },
    };
    let rotation = fields.get("rotation").and_then(|node| {
        let rotation = Fields::read(
            node,
            file,
            &fields.child("rotation"),
            &SECRET_ROTATION_KEYS,
            diagnostics,
        )?;
        let strategy = rotation.string("strategy", diagnostics).and_then(|name| {
            let strategy = Strategy::from_name(&name);
            if strategy.is_none() {
                let names = Strategy::ALL.map(Strategy::name);
                rotation.error(
                    "strategy",
                    unknown_name("strategy", &name, &names, None),
                    diagnostics,
                );
            }
            strategy
        });
        let config = match rotation.get("config") {
            None => serde_json::Map::new(),
            Some(config) => match config.to_json() {
                serde_json::Value::Object(map) => map,
                _ => {
                    rotation.error(
                        "config",
                        format!("expected a mapping, found {}", config.describe()),
                        diagnostics,
                    );
                    serde_json::Map::new()
                }
            },
        };
        Some(SecretRotation {
            policy: rotation.string("policy", diagnostics),
            strategy,
            schedule: read_schedule(&rotation, diagnostics),
            config,
        })
    });
    let group = fields.get("promotion").and_then(|node| {
        let promotion =
            Fields::read(node, file, &fields.child("promotion"), &["group"], diagnostics)?;
        let group = promotion.required_string("group", "a promotion line name", diagnostics)?;
        match check_config_name(&group, "promotion group") {
            Ok(()) => Some(group),
            Err(message) => {
                promotion.error("group", message, diagnostics);
                None
            }
        }
    });
    if diagnostics.error_count() > errors_before {
        return None;
    }
    Some(SecretConfig {
        env: env.to_owned(),
        key: key.to_owned(),
        store: store?,
        service,
        rotation,
        group,
        node: node.clone(),
    })
}
