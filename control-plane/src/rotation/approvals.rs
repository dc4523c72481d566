//! The leader's approval upkeep. Like the dispatcher it runs on every served node and acts only
//! while the node leads, from the replicated state alone:
//! - a run whose approval request has expired is ended (`ExpireApproval`; the state machine
//!   judges the expiry in log time, so an early proposal is refused and retried);
//! - a run awaiting approval whose plan was resolved from an older configuration (a change
//!   reset its decisions) gets its plan resolved again under the current one (`ReplanRun`),
//!   or ends when that configuration no longer rotates the secret;
//! - a break-glass review open past its deadline is marked overdue (`ReviewOverdue`, audited).

use std::time::Duration;

use tokio::sync::watch;

use crate::control::{ControlPlane, WriteError};
use crate::rotation::{spec, start};
use dsops_state::{Command, RunPhase, RunSpec};

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(1);

/// Runs the upkeep until `shutdown`.
pub async fn run(control: ControlPlane, shutdown: watch::Receiver<bool>) {
    super::while_leading(control, shutdown, TICK, "approvals", |control| async move {
        tick(&control).await
    })
    .await;
}

/// A run awaiting approval whose plan is older than the configuration.
struct Stale {
    run_id: String,
    env: String,
    key: String,
    rollback: bool,
}

async fn tick(control: &ControlPlane) -> Result<(), String> {
    let now = control.now_ms();
    let overdue: Vec<String> = control
        .read_local(|state| {
            state
                .reviews
                .values()
                .filter(|r| r.closed_by.is_none() && r.overdue_at_ms.is_none())
                .filter(|r| r.deadline_ms <= now)
                .map(|r| r.id.clone())
                .collect()
        })
        .await;
    let actor = format!("node-{} approvals", control.node_id());
    for review_id in overdue {
        let command = Command::ReviewOverdue { review_id: review_id.clone() };
        match control.write(&actor, &format!("overdue-{review_id}"), command).await {
            Ok(_) => tracing::warn!(%review_id, "break-glass review overdue"),
            Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    let (expired, stale) = control
        .read_local(|state| {
            let version = state.config_version();
            let mut expired = Vec::new();
            let mut stale = Vec::new();
            for run in state.active_runs.iter().filter_map(|id| state.runs.get(id)) {
                let Some(approval) = &run.approval else { continue };
                if run.phase != RunPhase::AwaitingApproval {
                    continue;
                }
                if approval.expires_at_ms <= now {
                    expired.push(run.id.clone());
                } else if run.spec.config_version < version {
                    stale.push(Stale {
                        run_id: run.id.clone(),
                        env: run.env.clone(),
                        key: run.key.clone(),
                        rollback: run.restore_previous,
                    });
                }
            }
            (expired, stale)
        })
        .await;
    for run_id in expired {
        let command = Command::ExpireApproval { run_id: run_id.clone() };
        match control.write(&actor, &format!("expire-{run_id}"), command).await {
            Ok(_) => tracing::info!(%run_id, "approvals: request expired"),
            // Not yet in log time (clocks differ by a little): next tick.
            Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    let Some((version, loaded)) =
        start::applied_config(control).await.map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    for run in stale {
        let (spec, reason) = match spec::find(&loaded, &run.env, &run.key)
            .and_then(|item| spec::run_spec(&loaded, &item, version))
        {
            Ok(spec) if run.rollback => (Some(RunSpec { approval: None, ..spec }), String::new()),
            Ok(spec) => (Some(spec), String::new()),
            Err(error) => (None, error.0),
        };
        let command = Command::ReplanRun { run_id: run.run_id.clone(), spec, reason };
        let request_id = format!("replan-{}-{version}", run.run_id);
        match control.write(&actor, &request_id, command).await {
            Ok(_) | Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}
