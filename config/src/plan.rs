//! The plan of an environment, from configuration alone: what each variable rotates against,
//! how, when it is next due, and which constraints apply.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::calendar::jitter_ms;
use crate::config::{Loaded, Origin};
use crate::document::suggest;
use crate::time::{blackout_at, next_start};

/// How far ahead the plan looks for a due time inside a maintenance window.
const HORIZON_DAYS: i64 = 366;

/// One variable of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    /// The environment.
    pub env: String,
    /// The variable.
    pub key: String,
    /// Where its value lives.
    pub store: String,
    /// The target service, if any.
    pub service: Option<String>,
    /// The service's type.
    pub service_type: Option<String>,
    /// The credential kind.
    pub kind: Option<String>,
    /// The network segment the work runs in (the service's, else the store's; `default` if none).
    pub segment: String,
    /// The strategy; `None` when the variable does not rotate.
    pub strategy: Option<String>,
    /// Where the strategy came from.
    pub strategy_origin: Option<Origin>,
    /// The rotation policy.
    pub policy: Option<String>,
    /// The cron schedule; `None` for manual rotation only.
    pub schedule: Option<String>,
    /// Where the schedule came from.
    pub schedule_origin: Option<Origin>,
    /// The next time it is due (inside a maintenance window when the policy has any).
    pub next_due: Option<DateTime<Utc>>,
    /// Why there is no next due time, when there is none.
    pub next_due_note: Option<String>,
    /// Whether the rotation waits for approval.
    pub approval_required: bool,
    /// The policy's maintenance windows, described.
    pub maintenance_windows: Vec<String>,
    /// How long the old credential stays valid after promotion.
    pub grace_period: Option<String>,
    /// What a start waits for besides its time: a blackout now, approval, a rate limit, its
    /// promotion stage.
    pub waits: Vec<String>,
    /// What the agents found when asked whether it could rotate now (with a cluster).
    pub preflight: Vec<PreflightFinding>,
}

/// One preflight check, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightFinding {
    /// `agent`, `credential`, `reach`, `privilege`, `users`, `grants`, `format`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// Known, but not a failure.
    pub warning: bool,
}

/// The plan cannot be made: the environment asked for does not exist, or a variable's strategy
/// cannot work against its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    message: String,
}

/// Why `overlap` cannot work for `item`, if it cannot: it needs a second valid credential for the
/// same identity during the grace period, and a PostgreSQL role or MySQL account holds one
/// password. The message names the service and the strategies that would work.
pub fn overlap_refusal(item: &crate::config::ResolvedSecret<'_>) -> Option<String> {
    let type_name = item.service_type.map(|t| t.metadata.name.as_str())?;
    let service = item.secret.service.as_ref().map(|s| s.service.as_str()).unwrap_or(type_name);
    matches!(type_name, "postgresql" | "mysql").then(|| {
        format!(
            "strategy overlap needs a target that holds two credentials for one identity at once; service {service} ({type_name}) holds one password per user: use two-key (two users taking turns) or immediate"
        )
    })
}

/// Builds the plan of one environment as of `now`.
pub fn plan(loaded: &Loaded, env: &str, now: DateTime<Utc>) -> Result<Vec<PlanRow>, PlanError> {
    if !loaded.config.envs.contains_key(env) {
        let names: Vec<&str> = loaded.config.envs.keys().map(String::as_str).collect();
        let mut message = format!("environment {env:?} is not defined in {}", loaded.config.file);
        match suggest(env, names.iter().copied()) {
            Some(hint) => message.push_str(&format!("; did you mean {hint:?}?")),
            None if names.is_empty() => message.push_str(" (it defines no environments)"),
            None => message.push_str(&format!(" (it defines: {})", names.join(", "))),
        }
        return Err(PlanError { message });
    }
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let rotation = &loaded.config.rotation;
    let blackouts: Vec<&crate::time::Blackout> =
        rotation.blackouts.iter().filter(|b| b.covers(env)).collect();
    for item in loaded.resolved().into_iter().filter(|r| r.secret.env == env) {
        let secret = item.secret;
        if let Some((crate::catalog::Strategy::Overlap, _)) = item.strategy
            && let Some(reason) = overlap_refusal(&item)
        {
            refused.push(format!("envs.{env}.{}: {reason}", secret.key));
        }
        let store_segment =
            loaded.config.secret_stores.get(&secret.store.store).and_then(|s| s.segment.clone());
        let segment = item
            .service
            .and_then(|s| s.segment.clone())
            .or(store_segment)
            .unwrap_or_else(|| "default".to_owned());
        let (next_due, next_due_note) = match (&item.strategy, &item.schedule) {
            (None, _) => (None, Some("does not rotate".to_owned())),
            (Some(_), None) => (None, Some("manual only (no schedule)".to_owned())),
            (Some(_), Some((schedule, _))) => {
                let jitter = jitter_ms(rotation.defaults.jitter, env, &secret.key);
                match next_start(
                    schedule,
                    item.windows,
                    &blackouts,
                    jitter,
                    now,
                    TimeDelta::days(HORIZON_DAYS),
                ) {
                    Some(due) => (Some(due), None),
                    None if item.windows.is_empty() && blackouts.is_empty() => {
                        (None, Some("the schedule never fires".to_owned()))
                    }
                    None => (
                        None,
                        Some(format!(
                            "no scheduled time falls in a maintenance window and outside the blackouts within {HORIZON_DAYS} days"
                        )),
                    ),
                }
            }
        };
        let mut waits = Vec::new();
        if item.strategy.is_some() {
            if let Some((blackout, until)) = blackout_at(&rotation.blackouts, env, now) {
                waits.push(format!(
                    "blackout {} until {}",
                    blackout.name,
                    until.format("%Y-%m-%d %H:%M UTC")
                ));
            }
            if let Some(rule) = &item.approval {
                waits.push(format!("approval: {} of {}", rule.required, rule.approvers.join(", ")));
            }
            let rate = item.rate_limit().filter(|r| *r != "unlimited");
            if let (Some(rate), Some(service)) = (rate, item.service) {
                waits.push(format!("rate limit {rate} of service {}", service.name));
            }
            if let Some((line, at)) =
                loaded.config.line_of(env, &secret.key).filter(|(_, at)| *at > 0)
            {
                let previous = &line.stages[at - 1];
                let soak = rotation.promotion.get(previous.stage).map(|s| s.soak.to_string());
                waits.push(format!(
                    "promotion line {}: after {}/{}{}",
                    line.name,
                    previous.env,
                    previous.key,
                    soak.map(|s| format!(" and its soak ({s})")).unwrap_or_default()
                ));
            }
        }
        rows.push(PlanRow {
            env: env.to_owned(),
            key: secret.key.clone(),
            store: secret.store.to_string(),
            service: secret.service.as_ref().map(ToString::to_string),
            service_type: item.service_type.map(|t| t.metadata.name.clone()),
            kind: item.kind.map(|k| k.name.clone()),
            segment,
            strategy: item.strategy.map(|(s, _)| s.to_string()),
            strategy_origin: item.strategy.map(|(_, o)| o),
            policy: item.policy.map(|(name, _)| name.to_owned()),
            schedule: item.schedule.as_ref().map(|(s, _)| s.to_string()),
            schedule_origin: item.schedule.as_ref().map(|(_, o)| *o),
            next_due,
            next_due_note,
            approval_required: item.approval_required,
            maintenance_windows: item.windows.iter().map(|w| w.describe()).collect(),
            grace_period: item.grace_period.map(|g| g.to_string()),
            waits,
            preflight: Vec::new(),
        });
    }
    if !refused.is_empty() {
        return Err(PlanError { message: refused.join("\n") });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn example() -> Loaded {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dsops.yaml");
        crate::config::load_file(std::path::Path::new(path)).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap() // a Saturday
    }

    #[test]
    fn dev_plan_resolves_strategies_and_due_times() {
        let rows = plan(&example(), "dev", now()).unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["APP_DB_PASSWORD", "DB_PASSWORD", "JWT_SIGNING_KEY"]);
        let db = &rows[1];
        assert_eq!(db.strategy.as_deref(), Some("immediate"));
        assert_eq!(db.strategy_origin, Some(Origin::Variable));
        assert_eq!(db.service_type.as_deref(), Some("postgresql"));
        assert_eq!(db.next_due, Some(Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()));
        // APP_DB_PASSWORD names no schedule: it takes rotation.defaults.
        assert_eq!(rows[0].schedule_origin, Some(Origin::Defaults));
        assert_eq!(rows[0].grace_period.as_deref(), Some("1d"));
        assert_eq!(rows[2].segment, "default");
        assert!(!rows.iter().any(|r| r.approval_required));
    }

    #[test]
    fn prod_plan_applies_policy_constraints() {
        let rows = plan(&example(), "prod", now()).unwrap();
        let orders = rows.iter().find(|r| r.key == "ORDERS_DB_PASSWORD").unwrap();
        assert_eq!(orders.strategy.as_deref(), Some("two-key"));
        assert_eq!(orders.strategy_origin, Some(Origin::Policy));
        assert!(orders.approval_required);
        assert_eq!(orders.maintenance_windows, ["0 1 * * 6 for 4h (UTC)"]);
        assert_eq!(orders.segment, "prod-db");
        // Saturday 02:00 inside the Saturday 01:00-05:00 window: next week, not today (past).
        assert_eq!(orders.next_due, Some(Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap()));
        let legacy = rows.iter().find(|r| r.key == "LEGACY_API_TOKEN").unwrap();
        assert_eq!(legacy.strategy, None);
        assert_eq!(legacy.next_due_note.as_deref(), Some("does not rotate"));
    }

    #[test]
    fn unknown_environment_suggests() {
        let error = plan(&example(), "prd", now()).unwrap_err().to_string();
        assert!(error.contains("environment \"prd\" is not defined"), "{error}");
        assert!(error.contains("did you mean \"prod\"?"), "{error}");
    }
}
