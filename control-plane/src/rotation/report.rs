//! Reporting runs and secrets for the admin API: the status of an environment's variables, a
//! secret's history with its receipts, runs by id.

use chrono::TimeDelta;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::common as common_wire;

use super::spec;
use super::start::{RotationError, current_config, failed, now_utc, summary};
use crate::control::ControlPlane;
use dsops_proto::domain::timestamp_ms as timestamp;
use dsops_state::{Run, secret_id};

/// A secret is "due soon" when its next due time is this close.
const DUE_SOON: TimeDelta = TimeDelta::hours(24);

/// The status of every variable of an environment.
pub(crate) async fn status(
    control: &ControlPlane,
    env: &str,
) -> Result<wire::RotationStatusResponse, RotationError> {
    let (_, loaded) = current_config(control).await?;
    if !loaded.config.envs.contains_key(env) {
        return Err(failed(spec::unknown_env(&loaded, env)));
    }
    let now = now_utc();
    let (secrets, runs, reviews) = control
        .read_local(|s| {
            let runs: Vec<Run> = s
                .secrets
                .iter()
                .filter(|(id, _)| id.starts_with(&format!("{env}/")))
                .filter_map(|(_, r)| {
                    r.active_run
                        .as_ref()
                        .or(r.last_run.as_ref())
                        .and_then(|id| s.runs.get(id))
                        .cloned()
                })
                .collect();
            let reviews: std::collections::HashMap<String, String> = s
                .reviews
                .values()
                .filter(|r| r.env == env && r.closed_by.is_none())
                .map(|r| {
                    let overdue = if r.overdue_at_ms.is_some() { " overdue" } else { "" };
                    (r.key.clone(), format!("{}{overdue}", r.id))
                })
                .collect();
            (s.secrets.clone(), runs, reviews)
        })
        .await;
    let mut rows = Vec::new();
    for item in loaded.resolved().into_iter().filter(|r| r.secret.env == env) {
        let record = secrets.get(&secret_id(env, &item.secret.key)).cloned().unwrap_or_default();
        let latest = runs.iter().find(|r| r.key == item.secret.key);
        let next_due = spec::next_due(&item, Some(&record), now);
        let status = match (item.strategy, record.active_run.as_ref(), record.last_phase) {
            (None, _, _) => "not_rotated",
            (_, Some(_), _)
                if latest.is_some_and(|r| r.phase == dsops_state::RunPhase::AwaitingApproval) =>
            {
                "awaiting_approval"
            }
            (_, Some(_), _)
                if latest.is_some_and(|r| {
                    r.dispatched.is_none() && !control.agents().has_agent(&r.spec)
                }) =>
            {
                "waiting_for_agent"
            }
            (_, Some(_), _) => "rotating",
            (_, None, Some(dsops_state::RunPhase::Quarantined)) => "quarantined",
            (_, None, Some(dsops_state::RunPhase::RolledBack)) => "failed",
            _ => match next_due {
                Some(due) if due <= now => "overdue",
                Some(due) if due - now <= DUE_SOON => "due_soon",
                _ => "healthy",
            },
        };
        let service_type = match (item.service_type, item.strategy) {
            (Some(t), _) => t.metadata.name.clone(),
            (None, Some(_)) => "random".to_owned(),
            (None, None) => "-".to_owned(),
        };
        rows.push(wire::SecretStatus {
            secret: Some(wire::SecretKey { env: env.to_owned(), key: item.secret.key.clone() }),
            service_type,
            last_rotated: record.last_rotated_at_ms.map(timestamp),
            next_due: next_due.map(|d| timestamp(d.timestamp_millis().max(0) as u64)),
            status: status.to_owned(),
            generation: record.generation,
            strategy: item.strategy.map(|(s, _)| s.to_string()).unwrap_or_default(),
            active_run: record.active_run.clone().unwrap_or_default(),
            detail: latest
                .filter(|r| r.phase != dsops_state::RunPhase::Completed)
                .map(|r| r.last_error.clone())
                .unwrap_or_default(),
            review: reviews.get(&item.secret.key).cloned().unwrap_or_default(),
        });
    }
    Ok(wire::RotationStatusResponse { secrets: rows })
}

/// The runs of one secret, newest first, with their steps and receipts.
pub(crate) async fn history(
    control: &ControlPlane,
    env: &str,
    key: &str,
    limit: usize,
) -> Result<wire::RotationHistoryResponse, RotationError> {
    let (_, loaded) = current_config(control).await?;
    spec::find(&loaded, env, key).map_err(failed)?;
    let runs: Vec<Run> = control
        .read_current(|s| {
            s.secrets
                .get(&secret_id(env, key))
                .map(|r| {
                    r.history
                        .iter()
                        .rev()
                        .take(limit)
                        .filter_map(|id| s.runs.get(id).cloned())
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
        .map_err(RotationError::from)?;
    let mut receipts = Vec::new();
    for run in runs.iter().rev() {
        for record in &run.receipts {
            if let (Some(body), Some(signature)) = (
                dsops_proto::hex_decode(&record.body_hex),
                dsops_proto::hex_decode(&record.signature_hex),
            ) && !body.is_empty()
            {
                receipts.push(common_wire::Receipt { body, signature });
            }
        }
    }
    Ok(wire::RotationHistoryResponse {
        runs: runs.iter().map(|r| summary(r, control, true)).collect(),
        receipts,
    })
}

/// Runs by id (built under the state's read lock: polling many runs copies no history).
pub(crate) async fn get_runs(
    control: &ControlPlane,
    ids: &[dsops_proto::domain::RunId],
    with_steps: bool,
) -> Result<wire::GetRunsResponse, RotationError> {
    let runs = control
        .read_local(|s| {
            ids.iter()
                .filter_map(|id| s.runs.get(id.as_str()))
                .map(|r| summary(r, control, with_steps))
                .collect()
        })
        .await;
    Ok(wire::GetRunsResponse { runs })
}
