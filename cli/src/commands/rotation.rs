//! `dsops rotation status|history|rollback`.

use chrono::{DateTime, Utc};
use dsops_proto::domain::{RunStatus, Step, StepResult};
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OutputFormat, RotationCommand};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use dsops_cli::follow::printable;

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    ts.as_ref().and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

pub(crate) fn short(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

/// `3d 4h`, `5h 2m`, `12m`, `40s`.
pub(crate) fn age(since: Option<DateTime<Utc>>) -> String {
    let Some(since) = since else { return "-".to_owned() };
    let seconds = (Utc::now() - since).num_seconds().max(0);
    let (d, h, m) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn status_name(status: &str) -> &'static str {
    match status {
        "healthy" => "Healthy",
        "due_soon" => "Due Soon",
        "overdue" => "Overdue",
        "failed" => "Failed",
        "quarantined" => "Quarantined",
        "rotating" => "Rotating",
        "waiting_for_agent" => "Waiting (no agent)",
        "awaiting_approval" => "Awaiting approval",
        "not_rotated" => "Not rotated",
        _ => "Unknown",
    }
}

#[derive(Debug, Serialize)]
struct StatusRow {
    secret: String,
    r#type: String,
    strategy: String,
    last_rotated: Option<DateTime<Utc>>,
    next_due: Option<DateTime<Utc>>,
    age_seconds: Option<i64>,
    status: String,
    generation: u64,
    active_run: String,
    detail: String,
    review: String,
}

#[derive(Debug, Serialize)]
struct HistoryRun {
    run_id: String,
    generation: u64,
    rollback: bool,
    strategy: String,
    state: String,
    requested_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    detail: String,
    requested_by: String,
    reason: String,
    approval: Option<HistoryApproval>,
    steps: Vec<HistoryStep>,
}

#[derive(Debug, Serialize)]
struct HistoryApproval {
    required: u32,
    approvers: Vec<String>,
    plan_digest: String,
    round: u32,
    granted_at: Option<DateTime<Utc>>,
    decisions: Vec<HistoryDecision>,
}

#[derive(Debug, Serialize)]
struct HistoryDecision {
    operator: String,
    approve: bool,
    reason: String,
    signed_at: Option<DateTime<Utc>>,
    recorded_at: Option<DateTime<Utc>>,
    signature_hex: String,
    certificate_pem: String,
}

#[derive(Debug, Serialize)]
struct HistoryStep {
    step: String,
    checked_step: String,
    attempt: u32,
    outcome: String,
    agent_id: String,
    at: Option<DateTime<Utc>>,
    fingerprint: String,
    detail: String,
}

/// `dsops rotation ...`.
pub async fn run(cli: &Cli, command: &RotationCommand) -> Result<(), Failure> {
    if let RotationCommand::Rollback { secret } = command {
        return super::rotate::rollback(cli, &secret.env, &secret.key).await;
    }
    if let RotationCommand::Enforce { policy, env } = command {
        return super::enforce::run(cli, policy, env.as_deref()).await;
    }
    if let RotationCommand::Audit { env, days, export } = command {
        return super::audit::rotation(cli, env, *days, *export).await;
    }
    if let RotationCommand::Health { env, export } = command {
        return super::health::run(cli, env.as_deref(), *export).await;
    }
    if let RotationCommand::Compliance(args) = command {
        return super::compliance::run(cli, args).await;
    }
    let backend = Backend::open(cli).await?;
    let result = match command {
        RotationCommand::Status { env } => status(cli, &backend, env).await,
        RotationCommand::History { secret, limit } => {
            history(cli, &backend, &secret.env, &secret.key, *limit).await
        }
        RotationCommand::Rollback { .. }
        | RotationCommand::Enforce { .. }
        | RotationCommand::Audit { .. }
        | RotationCommand::Health { .. }
        | RotationCommand::Compliance(_) => Ok(()),
    };
    backend.close().await;
    result
}

async fn status(cli: &Cli, backend: &Backend, env: &str) -> Result<(), Failure> {
    let response = backend.status(env).await?;
    let rows: Vec<StatusRow> = response
        .secrets
        .iter()
        .map(|s: &wire::SecretStatus| {
            let last = time(&s.last_rotated);
            StatusRow {
                secret: s.secret.as_ref().map(|k| k.key.clone()).unwrap_or_default(),
                r#type: s.service_type.clone(),
                strategy: s.strategy.clone(),
                last_rotated: last,
                next_due: time(&s.next_due),
                age_seconds: last.map(|t| (Utc::now() - t).num_seconds()),
                status: status_name(&s.status).to_owned(),
                generation: s.generation,
                active_run: s.active_run.clone(),
                detail: s.detail.clone(),
                review: s.review.clone(),
            }
        })
        .collect();
    if cli.output == OutputFormat::Json {
        return print_json(&rows);
    }
    let mut t = table(&["SECRET", "TYPE", "LAST_ROTATED", "NEXT_DUE", "AGE", "STATUS"]);
    for r in &rows {
        let mut status = if r.detail.is_empty() || r.status == "Healthy" {
            r.status.clone()
        } else {
            format!("{} ({})", r.status, r.detail)
        };
        if let Some(id) = r.review.strip_suffix(" overdue") {
            status.push_str(&format!(" [break-glass review {id} OVERDUE]"));
        } else if !r.review.is_empty() {
            status.push_str(&format!(" [break-glass review {} open]", r.review));
        }
        t.add_row(vec![
            r.secret.clone(),
            r.r#type.clone(),
            short(r.last_rotated),
            short(r.next_due),
            age(r.last_rotated),
            status,
        ]);
    }
    print_table(&t);
    Ok(())
}

async fn history(
    cli: &Cli,
    backend: &Backend,
    env: &str,
    key: &str,
    limit: u32,
) -> Result<(), Failure> {
    let response = backend.history(env, key, limit).await?;
    let runs: Vec<HistoryRun> = response
        .runs
        .iter()
        .map(|r| HistoryRun {
            run_id: r.run_id.clone(),
            generation: r.generation,
            rollback: r.rollback,
            strategy: r.strategy.clone(),
            state: RunStatus::of(r).name().to_owned(),
            requested_at: time(&r.requested_at),
            finished_at: time(&r.finished_at),
            detail: r.detail.clone(),
            requested_by: r.requested_by.clone(),
            reason: r.reason.clone(),
            approval: r.approval.as_ref().map(|a| HistoryApproval {
                required: a.required,
                approvers: a.approvers.clone(),
                plan_digest: a.plan_digest.clone(),
                round: a.round,
                granted_at: time(&a.granted_at),
                decisions: a
                    .decisions
                    .iter()
                    .map(|d| HistoryDecision {
                        operator: d.operator.clone(),
                        approve: d.approve,
                        reason: d.reason.clone(),
                        signed_at: time(&d.signed_at),
                        recorded_at: time(&d.recorded_at),
                        signature_hex: d.signature_hex.clone(),
                        certificate_pem: d.certificate_pem.clone(),
                    })
                    .collect(),
            }),
            steps: r
                .steps
                .iter()
                .map(|s| HistoryStep {
                    step: Step::from_wire(s.step, "step")
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    checked_step: Step::from_wire(s.checked_step, "checked_step")
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    attempt: s.attempt,
                    outcome: StepResult::from_wire(s.result, "result")
                        .map_or("unknown", StepResult::name)
                        .to_owned(),
                    agent_id: s.agent_id.clone(),
                    at: time(&s.at),
                    fingerprint: s.fingerprint.clone(),
                    detail: s.detail.clone(),
                })
                .collect(),
        })
        .collect();
    if cli.output == OutputFormat::Json {
        let receipts: Vec<serde_json::Value> = response
            .receipts
            .iter()
            .map(|r| serde_json::json!({ "body": dsops_proto::hex(&r.body), "signature": dsops_proto::hex(&r.signature) }))
            .collect();
        return print_json(&serde_json::json!({ "runs": runs, "receipts": receipts }));
    }
    if runs.is_empty() {
        out!("{env}/{key} has not rotated yet");
        return Ok(());
    }
    let mut t = table(&[
        "RUN",
        "GEN",
        "KIND",
        "REQUESTED",
        "BY",
        "APPROVED BY",
        "FINISHED",
        "RESULT",
        "STEPS",
    ]);
    for r in &runs {
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| {
                let mark =
                    if s.outcome == "succeeded" { "ok".to_owned() } else { s.outcome.clone() };
                let name = if s.checked_step.is_empty() {
                    s.step.clone()
                } else {
                    format!("check({})", s.checked_step)
                };
                format!("{name}:{mark}")
            })
            .collect();
        let result = if r.detail.is_empty() {
            r.state.clone()
        } else {
            format!("{} ({})", r.state, r.detail)
        };
        let approved_by = r.approval.as_ref().map_or("-".to_owned(), |a| {
            let names: Vec<String> = a
                .decisions
                .iter()
                .map(|d| {
                    let verb = if d.approve { "" } else { " (denied)" };
                    format!("{}{verb} {}", d.operator, short(d.recorded_at))
                })
                .collect();
            if names.is_empty() { "none yet".to_owned() } else { names.join(", ") }
        });
        let by = if r.reason.is_empty() {
            r.requested_by.clone()
        } else {
            format!("{} ({})", r.requested_by, printable(&r.reason))
        };
        t.add_row(vec![
            r.run_id.clone(),
            r.generation.to_string(),
            if r.rollback { "rollback".to_owned() } else { r.strategy.clone() },
            short(r.requested_at),
            by,
            approved_by,
            short(r.finished_at),
            result,
            steps.join(" "),
        ]);
    }
    print_table(&t);
    Ok(())
}
