//! From a stored configuration to what a run does ([`RunSpec`]) and which secrets a rotate
//! request selects.

use chrono::{DateTime, Utc};

use dsops_config::catalog::Strategy;
use dsops_config::config::{Loaded, ResolvedSecret};
use dsops_state::RunSpec;

/// Attempts per step before a run rolls back or is quarantined.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long an agent has for one step.
pub const STEP_TIMEOUT_MS: u64 = 120_000;

/// Why a secret cannot be rotated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// The network segment a secret's work runs in: the service's, else the store's, else `default`.
pub fn segment_of(loaded: &Loaded, item: &ResolvedSecret<'_>) -> String {
    let store_segment =
        loaded.config.secret_stores.get(&item.secret.store.store).and_then(|s| s.segment.clone());
    item.service
        .and_then(|s| s.segment.clone())
        .or(store_segment)
        .unwrap_or_else(|| "default".to_owned())
}

/// The error for an environment the configuration does not define, with a did-you-mean.
pub fn unknown_env(loaded: &Loaded, env: &str) -> SpecError {
    let names: Vec<&str> = loaded.config.envs.keys().map(String::as_str).collect();
    let hint = dsops_config::document::suggest(env, names.iter().copied())
        .map(|h| format!("; did you mean {h:?}?"))
        .unwrap_or_else(|| format!(" (environments: {})", names.join(", ")));
    SpecError(format!("environment {env:?} is not in the configuration{hint}"))
}

/// Finds `env`/`key` in the configuration, with a did-you-mean when it is not there.
pub fn find<'a>(loaded: &'a Loaded, env: &str, key: &str) -> Result<ResolvedSecret<'a>, SpecError> {
    let Some(env_config) = loaded.config.envs.get(env) else {
        return Err(unknown_env(loaded, env));
    };
    if !env_config.secrets.contains_key(key) {
        let names: Vec<&str> = env_config.secrets.keys().map(String::as_str).collect();
        let hint = dsops_config::document::suggest(key, names.iter().copied())
            .map(|h| format!("; did you mean {h:?}?"))
            .unwrap_or_default();
        return Err(SpecError(format!("{env} has no variable {key:?}{hint}")));
    }
    loaded
        .resolved()
        .into_iter()
        .find(|r| r.secret.env == env && r.secret.key == key)
        .ok_or_else(|| SpecError(format!("{env}/{key} does not resolve against the catalog")))
}

/// What a run of `item` does.
pub fn run_spec(
    loaded: &Loaded,
    item: &ResolvedSecret<'_>,
    config_version: u64,
) -> Result<RunSpec, SpecError> {
    let name = format!("{}/{}", item.secret.env, item.secret.key);
    let Some((strategy, _)) = item.strategy else {
        return Err(SpecError(format!("{name} does not rotate (no rotation strategy or policy)")));
    };
    let type_name = item.service_type.map(|t| t.metadata.name.as_str());
    if let Some(kind) = item.kind.filter(|k| k.name == dsops_config::config::CONNECTION_STRING) {
        return Err(SpecError(format!(
            "{name}: rotating {}/{} credentials is not supported in this version (rotate the password with kind db_password)",
            type_name.unwrap_or_default(),
            kind.name
        )));
    }
    match strategy {
        Strategy::Immediate | Strategy::TwoKey
            if type_name.is_some_and(|t| !dsops_config::config::ADAPTER_TYPES.contains(&t)) =>
        {
            return Err(SpecError(format!(
                "{name}: rotating {} credentials is not supported in this version (agents change passwords on {}); a script or webhook service can rotate them",
                type_name.unwrap_or_default(),
                dsops_config::config::ADAPTER_TYPES.join(", ")
            )));
        }
        Strategy::Immediate | Strategy::TwoKey | Strategy::Random => {}
        Strategy::Script | Strategy::Webhook => {
            // The agent calls only the programs and endpoints its own configuration names, so
            // the hook must be a service of the strategy's type, not a `rotation.config` setting.
            let wanted = strategy.to_string();
            if type_name != Some(wanted.as_str()) {
                return Err(SpecError(format!(
                    "{name}: strategy {wanted} calls the {wanted} service named in from.service; set from.service to svc://<service>?kind=secret with a service of type {wanted} (a command or URL in rotation.config is not run)"
                )));
            }
        }
        Strategy::Overlap
            if type_name.is_some_and(|t| dsops_config::config::OVERLAP_TYPES.contains(&t)) => {}
        // API keys whose create, verify and revoke calls the catalog describes.
        Strategy::Overlap if item.kind.is_some_and(|k| k.http.is_some()) => {}
        Strategy::Overlap => {
            // Database roles hold one password: a second valid credential for the same
            // identity cannot exist, which is what overlap needs.
            if let Some(reason) = dsops_config::plan::overlap_refusal(item) {
                return Err(SpecError(format!("{name}: {reason}")));
            }
            return Err(SpecError(format!(
                "{name}: strategy overlap is not supported in this version for {} (agents rotate overlap on {} only)",
                type_name.unwrap_or("this target"),
                dsops_config::config::OVERLAP_TYPES.join(", ")
            )));
        }
    }
    let store = &item.secret.store.store;
    if let Some(config) = loaded.config.secret_stores.get(store) {
        dsops_config::config::store_type_runs(store, &config.store_type)
            .map_err(|why| SpecError(format!("{name}: {why}")))?;
    }
    let config = item.secret.rotation.as_ref().map(|r| r.config.clone()).unwrap_or_default();
    let grace_ms = match strategy {
        // Only two-key, overlap, script and webhook (whose code may keep two credentials) leave
        // the old one working, so only they wait before retiring.
        Strategy::TwoKey | Strategy::Overlap | Strategy::Script | Strategy::Webhook => {
            item.grace_period.map_or(0, |g| g.as_secs() * 1000)
        }
        _ => 0,
    };
    Ok(RunSpec {
        strategy: strategy.to_string(),
        store_ref: item.secret.store.to_string(),
        service_ref: item.secret.service.as_ref().map(ToString::to_string),
        config_json: serde_json::Value::Object(config).to_string(),
        segment: segment_of(loaded, item),
        grace_ms,
        max_attempts: MAX_ATTEMPTS,
        step_timeout_ms: STEP_TIMEOUT_MS,
        config_version,
        value_format: item.kind.and_then(|k| k.constraints.as_ref()).and_then(|c| c.format.clone()),
        approval: item.approval.as_ref().map(|rule| dsops_state::ApprovalRule {
            required: rule.required,
            approvers: rule.approvers.clone(),
            expires_ms: rule.expires.as_secs() * 1000,
        }),
        promotion: promotion_of(loaded, item),
        rate_limit: rate_of(item),
    })
}

/// The rate limit of `item`'s target: its service's `rate_limit`, else its type's `rateLimit`.
pub fn rate_of(item: &ResolvedSecret<'_>) -> Option<dsops_state::RunRate> {
    let rate = dsops_config::time::RateLimit::parse(item.rate_limit()?).ok()??;
    Some(dsops_state::RunRate { runs: rate.runs, per_ms: rate.per_ms })
}

/// `item`'s place in its promotion line, if it is in one.
pub fn promotion_of(
    loaded: &Loaded,
    item: &ResolvedSecret<'_>,
) -> Option<dsops_state::PromotionRef> {
    let (line, at) = loaded.config.line_of(&item.secret.env, &item.secret.key)?;
    let stages = &loaded.config.rotation.promotion;
    let soak = stages.get(line.stages[at].stage)?.soak;
    Some(dsops_state::PromotionRef {
        line: line.name.clone(),
        stage: at as u32,
        stages: line.stages.iter().map(|s| format!("{}/{}", s.env, s.key)).collect(),
        soak_ms: soak.as_secs() * 1000,
        stage_gates: line
            .stages
            .iter()
            .map(|s| stages.get(s.stage).map(|st| st.gates.clone()).unwrap_or_default())
            .collect(),
    })
}

/// When a secret is next due after its last rotation (`None`: no schedule). A secret that never
/// rotated is due now. A certificate is due at its renewal time: the one its issuer suggested
/// (ACME renewal information), else its lifetime less `renew_before`.
pub fn next_due(
    item: &ResolvedSecret<'_>,
    record: Option<&dsops_state::SecretRecord>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let last_rotated_ms = record.and_then(|r| r.last_rotated_at_ms);
    let at = |ms: u64| DateTime::<Utc>::from_timestamp_millis(ms.min(i64::MAX as u64) as i64);
    if let Some(after) = dsops_config::config::renewal::renew_after(item) {
        if last_rotated_ms.is_none() {
            return Some(now);
        }
        let after_ms = after.as_secs().saturating_mul(1000);
        let suggested = record.and_then(|r| r.renew_at_ms);
        return dsops_config::config::renewal::renewal_at_ms(after_ms, last_rotated_ms, suggested)
            .and_then(at);
    }
    let (schedule, _) = item.schedule.as_ref()?;
    match last_rotated_ms.and_then(at) {
        Some(last) => schedule.next_utc(last),
        None => Some(now),
    }
}
