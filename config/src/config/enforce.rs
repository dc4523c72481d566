//! Policy enforcement: `policies.<name>` in `dsops.yaml` says what every secret in scope must
//! meet; `rotation.enforce: [name…]` makes `validate`, `plan` and `apply` refuse a configuration
//! that does not; `dsops rotation enforce --policy NAME` lists the violations, with each secret's
//! age against `maxAge` besides.
//!
//! ```yaml
//! policies:
//!   company-standard:
//!     envs: [production]                    # scope (default: every environment)
//!     maxAge: 90d                           # a schedule at least this frequent; older is overdue
//!     strategies: [two-key, random]         # allowed strategies
//!     requireApproval: true                 # every rotation in scope needs approval
//!     minLength: 32                         # generated values at least this long
//!     charsets: [alphanumeric, ascii-printable]
//!     requireRotation: true                 # every secret in scope rotates at all
//! rotation:
//!   enforce: [company-standard]
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::Config;
use super::resolve::ResolvedSecret;
use crate::catalog::{CHARSETS, Catalog, Strategy};
use crate::document::{Diagnostics, Fields, Pos, unknown_name};
use crate::time::Duration;

/// The length the agent generates when neither the variable nor its kind says.
pub const DEFAULT_GENERATED_LENGTH: u64 = 32;

/// `policies.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcePolicy {
    /// Its name.
    pub name: String,
    /// The environments it covers (empty: all).
    pub envs: Vec<String>,
    /// The longest a value may live: the schedule fires at least this often, and a secret last
    /// rotated longer ago is overdue.
    pub max_age: Option<Duration>,
    /// The strategies allowed.
    pub strategies: Option<Vec<String>>,
    /// Every rotation in scope waits for approval.
    pub require_approval: bool,
    /// Generated values are at least this long.
    pub min_length: Option<u64>,
    /// The charsets generated values may use.
    pub charsets: Option<Vec<String>>,
    /// Every secret in scope rotates.
    pub require_rotation: bool,
    /// Where it is written.
    pub pos: Pos,
}

/// One secret failing one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `env/KEY`.
    pub secret: String,
    /// `maxAge`, `schedule`, `strategies`, `requireApproval`, `minLength`, `charsets`,
    /// `requireRotation`.
    pub rule: &'static str,
    /// What the policy asks.
    pub required: String,
    /// What the secret has.
    pub actual: String,
}

const POLICY_KEYS: [&str; 7] =
    ["envs", "maxAge", "strategies", "requireApproval", "minLength", "charsets", "requireRotation"];

/// Reads `policies`.
pub(super) fn parse_policies(
    top: &Fields<'_>,
    env_names: &[&str],
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, EnforcePolicy> {
    let mut policies = BTreeMap::new();
    for (key, node) in top.entries("policies", diagnostics).unwrap_or_default() {
        let Some(name) = super::parse::check_name(
            key,
            top.file(),
            &top.child("policies"),
            "policy",
            diagnostics,
        ) else {
            continue;
        };
        let path = format!("policies.{name}");
        let Some(fields) = Fields::read(node, top.file(), &path, &POLICY_KEYS, diagnostics) else {
            continue;
        };
        let before = diagnostics.error_count();
        let envs = fields.known_names("envs", "environment", env_names, diagnostics);
        let max_age =
            fields.string("maxAge", diagnostics).and_then(|text| match Duration::parse(&text) {
                Ok(d) if d.as_secs() >= 3600 => Some(d),
                Ok(_) => {
                    fields.error("maxAge", "at least 1h", diagnostics);
                    None
                }
                Err(error) => {
                    fields.error("maxAge", error.to_string(), diagnostics);
                    None
                }
            });
        let strategies = fields.string_list("strategies", diagnostics);
        for name in strategies.iter().flatten() {
            if Strategy::from_name(name).is_none() {
                let names = Strategy::ALL.map(Strategy::name);
                fields.error(
                    "strategies",
                    unknown_name("strategy", name, &names, None),
                    diagnostics,
                );
            }
        }
        let charsets = fields.string_list("charsets", diagnostics);
        for name in charsets.iter().flatten() {
            if !CHARSETS.contains(&name.as_str()) {
                fields.error(
                    "charsets",
                    unknown_name("charset", name, &CHARSETS, None),
                    diagnostics,
                );
            }
        }
        let min_length = fields.integer("minLength", 1..=4096, diagnostics).map(|n| n as u64);
        let require_approval = fields.boolean("requireApproval", diagnostics).unwrap_or(false);
        let require_rotation = fields.boolean("requireRotation", diagnostics).unwrap_or(false);
        if diagnostics.error_count() > before {
            continue;
        }
        policies.insert(
            name.clone(),
            EnforcePolicy {
                name,
                envs,
                max_age,
                strategies,
                require_approval,
                min_length,
                charsets,
                require_rotation,
                pos: node.pos,
            },
        );
    }
    policies
}

/// The longest time between two firings of `item`'s schedule over the next year (`None`: it
/// has no schedule).
pub fn longest_gap(item: &ResolvedSecret<'_>, now: DateTime<Utc>) -> Option<chrono::TimeDelta> {
    let (schedule, _) = item.schedule.as_ref()?;
    let horizon = now + chrono::TimeDelta::days(400);
    let mut at = schedule.next_utc(now)?;
    let mut longest = chrono::TimeDelta::zero();
    for _ in 0..2_000 {
        let Some(next) = schedule.next_utc(at) else { break };
        longest = longest.max(next - at);
        if next > horizon {
            break;
        }
        at = next;
    }
    Some(longest)
}

fn days(delta: chrono::TimeDelta) -> String {
    let hours = delta.num_hours();
    if hours % 24 == 0 { format!("{}d", hours / 24) } else { format!("{hours}h") }
}

/// What `item` fails of `policy`, from the configuration alone (its age is the caller's).
pub fn violations(
    policy: &EnforcePolicy,
    item: &ResolvedSecret<'_>,
    now: DateTime<Utc>,
) -> Vec<Violation> {
    let secret = format!("{}/{}", item.secret.env, item.secret.key);
    let mut out = Vec::new();
    let mut push = |rule, required: String, actual: String| {
        out.push(Violation { secret: secret.clone(), rule, required, actual });
    };
    let Some((strategy, _)) = item.strategy else {
        if policy.require_rotation {
            push("requireRotation", "a rotation".into(), "none (never rotated by dsops)".into());
        }
        return out;
    };
    if let Some(max_age) = policy.max_age {
        let limit = chrono::TimeDelta::seconds(max_age.as_secs() as i64);
        match longest_gap(item, now) {
            None => push(
                "schedule",
                format!("at least every {}", days(limit)),
                "none (manual only)".into(),
            ),
            Some(gap) if gap > limit => push(
                "schedule",
                format!("at least every {}", days(limit)),
                format!("up to {} between firings", days(gap)),
            ),
            Some(_) => {}
        }
    }
    if let Some(allowed) = &policy.strategies
        && !allowed.iter().any(|s| s == strategy.name())
    {
        push("strategies", allowed.join(", "), strategy.name().to_owned());
    }
    if policy.require_approval && !item.approval_required {
        push("requireApproval", "approval".into(), "none".into());
    }
    let config = item.secret.rotation.as_ref().map(|r| &r.config);
    let generates = !matches!(strategy, Strategy::Script | Strategy::Webhook);
    if generates && let Some(min) = policy.min_length {
        let length = config
            .and_then(|c| c.get("length"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(DEFAULT_GENERATED_LENGTH);
        if length < min {
            push("minLength", min.to_string(), length.to_string());
        }
    }
    if generates && let Some(allowed) = &policy.charsets {
        let format = item.kind.and_then(|k| k.constraints.as_ref()).and_then(|c| c.format.clone());
        let charset = config
            .and_then(|c| c.get("charset"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .or(format)
            .unwrap_or_else(|| "alphanumeric".to_owned());
        if !allowed.contains(&charset) {
            push("charsets", allowed.join(", "), charset);
        }
    }
    out
}

impl EnforcePolicy {
    /// The policy a catalog RotationPolicy's `spec.requirements` states (a `maxAge` that does
    /// not parse is left out; the schema checked its form).
    pub fn from_requirements(name: &str, r: &crate::catalog::Requirements) -> EnforcePolicy {
        EnforcePolicy {
            name: name.to_owned(),
            envs: r.envs.clone(),
            max_age: r.max_age.as_deref().and_then(|t| Duration::parse(t).ok()),
            strategies: r.strategies.clone(),
            require_approval: r.require_approval.unwrap_or(false),
            min_length: r.min_length,
            charsets: r.charsets.clone(),
            require_rotation: r.require_rotation.unwrap_or(false),
            pos: Pos::default(),
        }
    }

    /// Whether it covers environment `env`.
    pub fn covers(&self, env: &str) -> bool {
        self.envs.is_empty() || self.envs.iter().any(|e| e == env)
    }
}

/// Every violation of the policies `rotation.enforce` names, as errors at each secret: what
/// `validate`, `plan` and `apply` refuse a configuration for.
pub fn enforced(loaded: &super::Loaded) -> Result<(), Vec<crate::document::Diagnostic>> {
    let mut diagnostics = Diagnostics::new();
    check_enforced(&loaded.config, &loaded.catalog, &mut diagnostics);
    if diagnostics.has_errors() { Err(diagnostics.sorted()) } else { Ok(()) }
}

/// The policy `name`: `policies.<name>` in dsops.yaml, else the `spec.requirements` of the
/// catalog's RotationPolicy of that name.
pub fn find_policy(config: &Config, catalog: &Catalog, name: &str) -> Option<EnforcePolicy> {
    if let Some(policy) = config.policies.get(name) {
        return Some(policy.clone());
    }
    let entry = catalog.rotation_policies.get(name)?;
    let requirements = entry.value.spec.requirements.as_ref()?;
    Some(EnforcePolicy::from_requirements(name, requirements))
}

/// Every policy name a policy may be looked up by: dsops.yaml's and the catalog's with
/// requirements.
pub fn policy_names<'a>(config: &'a Config, catalog: &'a Catalog) -> Vec<&'a str> {
    let mut names: Vec<&str> = config.policies.keys().map(String::as_str).collect();
    names.extend(
        catalog
            .rotation_policies
            .iter()
            .filter(|(_, e)| e.value.spec.requirements.is_some())
            .map(|(name, _)| name.as_str()),
    );
    names
}

/// Reports each name of `rotation.enforce` that names no policy, at its line.
pub(super) fn check_names(
    root: &crate::document::Node,
    config: &Config,
    catalog: &Catalog,
    diagnostics: &mut Diagnostics,
) {
    // Declared in dsops.yaml counts as known even when the policy has an error of its own.
    let declared = super::parse::declared(root.get("policies"));
    let mut known = policy_names(config, catalog);
    known.extend(declared.iter().copied());
    for (index, name) in config.rotation.enforce.iter().enumerate() {
        if find_policy(config, catalog, name).is_some() || declared.contains(&name.as_str()) {
            continue;
        }
        let list = root.at_pointer("/rotation/enforce");
        let pos = match &list.value {
            crate::document::Value::Seq(items) => items
                .iter()
                .find(|i| i.scalar_text() == Some(name.as_str()))
                .map_or(list.pos, |i| i.pos),
            _ => list.pos,
        };
        let message = unknown_name("policy", name, &known, None);
        diagnostics.error(&config.file, pos, &format!("rotation.enforce[{index}]"), message);
    }
}

fn check_enforced(config: &Config, catalog: &Catalog, diagnostics: &mut Diagnostics) {
    if config.rotation.enforce.is_empty() {
        return;
    }
    let resolved = super::resolve(config, catalog, &mut Diagnostics::new());
    let now = Utc::now();
    for name in &config.rotation.enforce {
        let Some(policy) = find_policy(config, catalog, name) else { continue };
        let policy = &policy;
        for item in resolved.iter().filter(|i| policy.covers(&i.secret.env)) {
            for v in violations(policy, item, now) {
                diagnostics.error(
                    &config.file,
                    item.secret.node.pos,
                    &format!("envs.{}.{}", item.secret.env, item.secret.key),
                    format!(
                        "violates enforced policy {name}: {}: requires {}, has {}",
                        v.rule, v.required, v.actual
                    ),
                );
            }
        }
    }
}
