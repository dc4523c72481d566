//! `rotation.promotion` — the order environments rotate in — and `health`, the checks that gate
//! it.
//!
//! ```yaml
//! rotation:
//!   promotion:
//!     - env: dev
//!       soak: 10m
//!     - env: staging
//!       soak: 24h                 # staging runs on the new value for a day ...
//!       gates: [staging-api]      # ... and stays healthy, before production starts
//!     - env: production
//!       gates: [prod-db-ready]    # checked before production's own run starts
//! health:
//!   staging-api:   { type: http, segment: seg-a, url: "https://api.staging.internal/healthz", expect: 200, every: 1m, failures: 3 }
//!   prod-db-ready: { type: sql, service: pg-prod, query: "select 1", every: 5m }
//! ```
//!
//! A variable present in several stages — the same key, or the same `promotion.group` — forms a
//! *line*: its runs go stage by stage, each later one after the previous stage completed and
//! soaked with its gates passing.

use std::collections::BTreeMap;

use crate::document::{Diagnostics, Fields, Node, Pos, Value, unknown_name};
use crate::time::Duration;

use super::model::{Config, ServiceConfig};

/// The longest soak.
const MAX_SOAK_SECS: u64 = 30 * 86_400;

/// One stage of `rotation.promotion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionStage {
    /// The environment.
    pub env: String,
    /// How long it runs on a new value, its gates passing, before the next stage starts.
    pub soak: Duration,
    /// `health` checks: before this stage's own run starts, and throughout its soak.
    pub gates: Vec<String>,
    /// Where it is written.
    pub pos: Pos,
}

/// What a gate's outcome does to a wave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateAction {
    /// Stop the line: no later stage starts until an operator resumes it.
    Halt,
    /// Do not go on until the check passes again.
    Wait,
    /// Go on as if it had passed.
    Continue,
}

impl GateAction {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            GateAction::Halt => "halt",
            GateAction::Wait => "wait",
            GateAction::Continue => "continue",
        }
    }

    fn parse(text: &str) -> Option<GateAction> {
        match text {
            "halt" => Some(GateAction::Halt),
            "wait" => Some(GateAction::Wait),
            "continue" => Some(GateAction::Continue),
            _ => None,
        }
    }
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// An HTTP `GET`: the status must be `expect`, and the body contain `body` when set.
    Http {
        /// `http://` or `https://`.
        url: String,
        /// The status that passes.
        expect: u16,
        /// Text the body must contain.
        body: Option<String>,
    },
    /// A query on a database service, with its admin credential: it must succeed, and its
    /// first column of the first row equal `expect` when set.
    Sql {
        /// The service.
        service: String,
        /// The query.
        query: String,
        /// The value that passes.
        expect: Option<String>,
    },
    /// The `check` command of a `script` service: exit 0 passes, 1 fails, anything else is
    /// inconclusive.
    Script {
        /// The service.
        service: String,
    },
}

impl HealthProbe {
    /// `http`, `sql` or `script`.
    pub fn kind(&self) -> &'static str {
        match self {
            HealthProbe::Http { .. } => "http",
            HealthProbe::Sql { .. } => "sql",
            HealthProbe::Script { .. } => "script",
        }
    }
}

/// `health.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Its name.
    pub name: String,
    /// What it probes.
    pub probe: HealthProbe,
    /// The segment whose agents run it (a SQL or script check's service's).
    pub segment: String,
    /// How often it runs while a wave needs it.
    pub every: Duration,
    /// Consecutive failing probes before the check fails.
    pub failures: u32,
    /// How long one probe may take.
    pub timeout: Duration,
    /// What a failure does.
    pub on_fail: GateAction,
    /// What an inconclusive result does.
    pub on_inconclusive: GateAction,
}

/// A variable's place in a line: the stage (index into `rotation.promotion`), its environment
/// and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineStage {
    /// Index into `rotation.promotion`.
    pub stage: usize,
    /// The environment.
    pub env: String,
    /// The variable.
    pub key: String,
}

/// The variables that rotate as one wave, in stage order (two or more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionLine {
    /// The group, or the shared key.
    pub name: String,
    /// Its stages, in order.
    pub stages: Vec<LineStage>,
}

/// The lines of a configuration, and where each variable stands in them (computed once per
/// configuration: a bulk rotation asks for every secret's place).
#[derive(Debug, Clone, Default)]
pub struct Lines {
    list: Vec<PromotionLine>,
    /// `(env, key)` → (index into `list`, stage within the line).
    places: std::collections::HashMap<(String, String), (usize, usize)>,
}

impl Config {
    /// Every line: variables of the same key (or `promotion.group`) in two or more stages.
    pub fn promotion_lines(&self) -> &[PromotionLine] {
        &self.lines().list
    }

    fn lines(&self) -> &Lines {
        self.lines.get_or_init(|| {
            let list = self.compute_lines();
            let mut places = std::collections::HashMap::new();
            for (index, line) in list.iter().enumerate() {
                for (at, stage) in line.stages.iter().enumerate() {
                    places.insert((stage.env.clone(), stage.key.clone()), (index, at));
                }
            }
            Lines { list, places }
        })
    }

    fn compute_lines(&self) -> Vec<PromotionLine> {
        let mut lines: BTreeMap<String, Vec<LineStage>> = BTreeMap::new();
        for (stage, step) in self.rotation.promotion.iter().enumerate() {
            let Some(env) = self.envs.get(&step.env) else { continue };
            for secret in env.secrets.values().filter(|s| s.rotation.is_some()) {
                let name = secret.group.clone().unwrap_or_else(|| secret.key.clone());
                let line = lines.entry(name).or_default();
                // Two variables of one environment in one group: the first counts (validation
                // reports the second).
                if line.iter().all(|s| s.stage != stage) {
                    line.push(LineStage { stage, env: env.name.clone(), key: secret.key.clone() });
                }
            }
        }
        lines
            .into_iter()
            .filter(|(_, stages)| stages.len() >= 2)
            .map(|(name, stages)| PromotionLine { name, stages })
            .collect()
    }

    /// The line `env/key` is in, and its place there.
    pub fn line_of(&self, env: &str, key: &str) -> Option<(&PromotionLine, usize)> {
        let lines = self.lines();
        let &(index, at) = lines.places.get(&(env.to_owned(), key.to_owned()))?;
        Some((&lines.list[index], at))
    }
}

/// Reads `rotation.promotion`: each stage's environment declared, once; its gates named under
/// `health`; soaks up to 30 days.
pub(super) fn parse_promotion(
    rotation: &Fields<'_>,
    env_names: &[&str],
    health_names: &[&str],
    diagnostics: &mut Diagnostics,
) -> Vec<PromotionStage> {
    let mut stages = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let Some(node) = rotation.get("promotion") else { return stages };
    let Value::Seq(items) = &node.value else {
        rotation.error(
            "promotion",
            format!("expected a list of stages, found {}", node.describe()),
            diagnostics,
        );
        return stages;
    };
    for (index, item) in items.iter().enumerate() {
        let path = format!("{}[{index}]", rotation.child("promotion"));
        let Some(fields) =
            Fields::read(item, rotation.file(), &path, &["env", "soak", "gates"], diagnostics)
        else {
            continue;
        };
        let Some(env) = fields.required_string("env", "an environment under envs", diagnostics)
        else {
            continue;
        };
        if !env_names.contains(&env.as_str()) {
            fields.error("env", unknown_name("environment", &env, env_names, None), diagnostics);
            continue;
        }
        if seen.contains(&env) {
            fields.error(
                "env",
                format!("{env} is already a stage; each environment is one stage"),
                diagnostics,
            );
            continue;
        }
        seen.push(env.clone());
        let soak = match fields.string("soak", diagnostics) {
            None => Duration::from_secs(0),
            Some(text) => match Duration::parse(&text) {
                Ok(d) if d.as_secs() <= MAX_SOAK_SECS => d,
                Ok(_) => {
                    fields.error("soak", "at most 30d", diagnostics);
                    continue;
                }
                Err(error) => {
                    fields.error("soak", error.to_string(), diagnostics);
                    continue;
                }
            },
        };
        let gates = fields.string_list("gates", diagnostics).unwrap_or_default();
        let mut ok = true;
        for (at, gate) in gates.iter().enumerate() {
            if !health_names.contains(&gate.as_str()) {
                ok = false;
                let pos = item_pos(fields.get("gates"), at);
                let message = unknown_name(
                    "health check",
                    gate,
                    health_names,
                    Some("define it under `health`"),
                );
                diagnostics.error(rotation.file(), pos, &format!("{path}.gates[{at}]"), message);
            }
        }
        if ok {
            stages.push(PromotionStage { env, soak, gates, pos: item.pos });
        }
    }
    stages
}

fn item_pos(list: Option<&Node>, index: usize) -> Pos {
    match list.map(|n| (&n.value, n.pos)) {
        Some((Value::Seq(items), _)) if index < items.len() => items[index].pos,
        Some((_, pos)) => pos,
        None => Pos::default(),
    }
}

const HEALTH_KEYS: [&str; 12] = [
    "type",
    "segment",
    "url",
    "expect",
    "body",
    "service",
    "query",
    "every",
    "failures",
    "timeout",
    "on_fail",
    "on_inconclusive",
];

/// Reads `health`: each check's type and the settings it needs, a SQL check's service a
/// database, a script check's service a `script` service.
pub(super) fn parse_health(
    top: &Fields<'_>,
    services: &BTreeMap<String, ServiceConfig>,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, HealthCheck> {
    let mut checks = BTreeMap::new();
    for (key, node) in top.entries("health", diagnostics).unwrap_or_default() {
        let path = top.child("health");
        let Some(name) =
            super::parse::check_name(key, top.file(), &path, "health check", diagnostics)
        else {
            continue;
        };
        let path = format!("health.{name}");
        let Some(fields) = Fields::read(node, top.file(), &path, &HEALTH_KEYS, diagnostics) else {
            continue;
        };
        let before = diagnostics.error_count();
        let kind = fields.required_string("type", "http, sql or script", diagnostics);
        let service_of = |fields: &Fields<'_>,
                          diagnostics: &mut Diagnostics,
                          check: &str,
                          want: &[&str]| {
            let name =
                fields.required_string("service", "a service under services", diagnostics)?;
            let Some(service) = services.get(&name) else {
                let names: Vec<&str> = services.keys().map(String::as_str).collect();
                fields.error("service", unknown_name("service", &name, &names, None), diagnostics);
                return None;
            };
            if !want.contains(&service.service_type.as_str()) {
                fields.error(
                    "service",
                    format!(
                        "{name} is a {} service; a {check} check needs {}",
                        service.service_type,
                        want.join(" or ")
                    ),
                    diagnostics,
                );
                return None;
            }
            Some(service)
        };
        let (probe, service_segment) = match kind.as_deref() {
            Some("http") => {
                let url = fields.required_string("url", "http(s)://host/path", diagnostics);
                if let Some(url) = &url
                    && !(url.starts_with("https://") || url.starts_with("http://"))
                {
                    fields.error(
                        "url",
                        format!("{url:?} is not an http:// or https:// URL"),
                        diagnostics,
                    );
                }
                let expect = fields.integer("expect", 100..=599, diagnostics).unwrap_or(200) as u16;
                let body = fields.string("body", diagnostics);
                (url.map(|url| HealthProbe::Http { url, expect, body }), None)
            }
            Some("sql") => {
                let service =
                    service_of(&fields, diagnostics, "sql", &["postgresql", "mysql", "redis"]);
                let query =
                    fields.required_string("query", "a query such as select 1", diagnostics);
                let expect = fields.string("expect", diagnostics);
                let segment = service.and_then(|s| s.segment.clone());
                let probe = service.zip(query).map(|(service, query)| HealthProbe::Sql {
                    service: service.name.clone(),
                    query,
                    expect,
                });
                (probe, segment)
            }
            Some("script") => {
                let service = service_of(&fields, diagnostics, "script", &["script"]);
                let segment = service.and_then(|s| s.segment.clone());
                (service.map(|s| HealthProbe::Script { service: s.name.clone() }), segment)
            }
            Some(other) => {
                fields.error(
                    "type",
                    unknown_name("health check type", other, &["http", "sql", "script"], None),
                    diagnostics,
                );
                (None, None)
            }
            None => (None, None),
        };
        let segment = match (&probe, fields.string("segment", diagnostics)) {
            (Some(HealthProbe::Http { .. }), Some(segment)) => {
                match dsops_proto::domain::names::check_config_name(&segment, "segment") {
                    Ok(()) => segment,
                    Err(message) => {
                        fields.error("segment", message, diagnostics);
                        continue;
                    }
                }
            }
            (_, Some(_)) => {
                fields.error(
                    "segment",
                    "a sql or script check runs in its service's segment; remove segment",
                    diagnostics,
                );
                continue;
            }
            (_, None) => service_segment.unwrap_or_else(|| "default".to_owned()),
        };
        let duration = |key: &str,
                        default: u64,
                        range: std::ops::RangeInclusive<u64>,
                        diagnostics: &mut Diagnostics| {
            match fields.string(key, diagnostics) {
                None => Some(Duration::from_secs(default)),
                Some(text) => match Duration::parse(&text) {
                    Ok(d) if range.contains(&d.as_secs()) => Some(d),
                    Ok(_) => {
                        fields.error(
                            key,
                            format!("between {}s and {}s", range.start(), range.end()),
                            diagnostics,
                        );
                        None
                    }
                    Err(error) => {
                        fields.error(key, error.to_string(), diagnostics);
                        None
                    }
                },
            }
        };
        let every = duration("every", 60, 5..=86_400, diagnostics);
        let timeout = duration("timeout", 10, 1..=300, diagnostics);
        let failures = fields.integer("failures", 1..=100, diagnostics).unwrap_or(1) as u32;
        let action = |key: &str, default: GateAction, diagnostics: &mut Diagnostics| match fields
            .string(key, diagnostics)
        {
            None => Some(default),
            Some(text) => GateAction::parse(&text).or_else(|| {
                fields.error(
                    key,
                    unknown_name("action", &text, &["halt", "wait", "continue"], None),
                    diagnostics,
                );
                None
            }),
        };
        let on_fail = action("on_fail", GateAction::Halt, diagnostics);
        let on_inconclusive = action("on_inconclusive", GateAction::Wait, diagnostics);
        if diagnostics.error_count() > before {
            continue;
        }
        if let (Some(probe), Some(every), Some(timeout), Some(on_fail), Some(on_inconclusive)) =
            (probe, every, timeout, on_fail, on_inconclusive)
        {
            checks.insert(
                name.clone(),
                HealthCheck {
                    name,
                    probe,
                    segment,
                    every,
                    failures,
                    timeout,
                    on_fail,
                    on_inconclusive,
                },
            );
        }
    }
    checks
}

/// Checks `promotion.group` of the variables: no two variables of one environment in one group.
pub(super) fn check_groups(config: &Config, diagnostics: &mut Diagnostics) {
    let staged: Vec<&str> = config.rotation.promotion.iter().map(|s| s.env.as_str()).collect();
    for env in config.envs.values().filter(|e| staged.contains(&e.name.as_str())) {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for secret in env.secrets.values().filter(|s| s.rotation.is_some()) {
            let name = secret.group.clone().unwrap_or_else(|| secret.key.clone());
            if let Some(first) = seen.insert(name.clone(), &secret.key) {
                let pos = secret.node.get("promotion").map_or(secret.node.pos, |n| n.pos);
                diagnostics.error(
                    &config.file,
                    pos,
                    &format!("envs.{}.{}.promotion.group", env.name, secret.key),
                    format!(
                        "{} and {first} of {} are both in promotion line {name:?}; a line has one variable per environment",
                        secret.key, env.name
                    ),
                );
            }
        }
    }
}
