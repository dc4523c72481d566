//! Reporting runs and secrets for the admin API: the status of an environment's variables, a
//! secret's history with its receipts, runs by id.

use std::collections::HashMap;
use std::ops::Bound;

use chrono::TimeDelta;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::common as common_wire;

use super::spec;
use super::start::{RotationError, current_config, failed, now_utc, summary};
use crate::control::ControlPlane;
use dsops_proto::domain::RotationStatus;
use dsops_proto::domain::timestamp_ms as timestamp;
use dsops_state::{Run, secret_id};

/// A secret is "due soon" when its next due time is this close.
const DUE_SOON: TimeDelta = TimeDelta::hours(24);

/// The status of a page of an environment's variables, in name order. Only that page is
/// resolved and read from the state (O(page), however large the environment or the
/// configuration).
pub(crate) async fn status(
    control: &ControlPlane,
    request: &RotationStatus,
) -> Result<wire::RotationStatusResponse, RotationError> {
    let env = request.env.as_str();
    let (_, loaded) = current_config(control).await?;
    let Some(variables) = loaded.config.envs.get(env).map(|e| &e.secrets) else {
        return Err(failed(spec::unknown_env(&loaded, env)));
    };
    let from = match &request.after {
        Some(after) => Bound::Excluded(after.clone()),
        None => Bound::Unbounded,
    };
    let mut page: Vec<&String> = variables
        .range((from, Bound::Unbounded))
        .map(|(key, _)| key)
        .take(request.page_size + 1)
        .collect();
    let next_page_token = if page.len() > request.page_size {
        page.truncate(request.page_size);
        page.last().map(|key| (*key).clone()).unwrap_or_default()
    } else {
        String::new()
    };
    let items: Vec<_> = page.iter().filter_map(|key| loaded.resolve_secret(env, key)).collect();
    let now = now_utc();
    let (records, runs, reviews) = control
        .read_local(|s| {
            let mut records = HashMap::new();
            let mut runs: HashMap<String, Run> = HashMap::new();
            for item in &items {
                let key = &item.secret.key;
                let Some(record) = s.secrets.get(&secret_id(env, key)) else { continue };
                let latest = record.active_run.as_ref().or(record.last_run.as_ref());
                if let Some(run) = latest.and_then(|id| s.runs.get(id)) {
                    runs.insert(key.clone(), run.clone());
                }
                records.insert(key.clone(), record.clone());
            }
            let reviews: HashMap<String, String> = s
                .reviews
                .values()
                .filter(|r| r.env == env && r.closed_by.is_none())
                .map(|r| {
                    let overdue = if r.overdue_at_ms.is_some() { " overdue" } else { "" };
                    (r.key.clone(), format!("{}{overdue}", r.id))
                })
                .collect();
            (records, runs, reviews)
        })
        .await;
    let mut rows = Vec::new();
    for item in items {
        let record = records.get(&item.secret.key).cloned().unwrap_or_default();
        let latest = runs.get(&item.secret.key);
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
    Ok(wire::RotationStatusResponse { secrets: rows, next_page_token })
}

/// The status of every variable of an environment, page after page (the reports API's export).
pub(crate) async fn status_all(
    control: &ControlPlane,
    env: &str,
) -> Result<wire::RotationStatusResponse, RotationError> {
    let mut request = RotationStatus {
        env: env.to_owned(),
        page_size: dsops_proto::domain::STATUS_PAGE_MAX,
        after: None,
    };
    let mut all = wire::RotationStatusResponse::default();
    loop {
        let page = status(control, &request).await?;
        all.secrets.extend(page.secrets);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        request.after = Some(page.next_page_token);
    }
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
