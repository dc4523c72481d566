use chrono::{DateTime, Utc};
use dsops_config::plan::{PlanRow, plan};

use crate::args::{Cli, OutputFormat, PlanArgs};
use crate::context::require_config;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// `dsops plan --env ENV`.
pub async fn run(cli: &Cli, args: &PlanArgs) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let now = args.at.unwrap_or_else(Utc::now);
    let mut rows = plan(&loaded, &args.env, now).map_err(|e| Failure::invalid(e.to_string()))?;
    // With a cluster: where each secret's promotion wave stands now.
    if let Some(remote) = crate::remote::Remote::from_cli(cli)? {
        let request = dsops_proto::wire::admin::PromotionStatusRequest {
            env: args.env.clone(),
            key: String::new(),
        };
        let status = remote
            .call("promotion status", |mut c| {
                let request = request.clone();
                async move { c.promotion_status(request).await }
            })
            .await?;
        let request = dsops_proto::wire::admin::PreflightRequest { env: args.env.clone() };
        let checked = remote
            .call("preflight", |mut c| {
                let request = request.clone();
                async move { c.preflight(request).await }
            })
            .await?;
        for secret in &checked.secrets {
            if let Some(row) = rows.iter_mut().find(|r| r.key == secret.key) {
                row.preflight = secret
                    .checks
                    .iter()
                    .map(|c| dsops_config::plan::PreflightFinding {
                        name: c.name.clone(),
                        ok: c.ok,
                        detail: c.detail.clone(),
                        warning: c.warning,
                    })
                    .collect();
            }
        }
        for line in &status.lines {
            for stage in line.stages.iter().filter(|s| s.env == args.env) {
                if !matches!(stage.state.as_str(), "waiting" | "halted") {
                    continue;
                }
                if let Some(row) = rows.iter_mut().find(|r| r.key == stage.key) {
                    row.waits.push(format!("wave {} {}: {}", line.wave, stage.state, stage.detail));
                }
            }
        }
    }
    let failed: usize =
        rows.iter().filter(|r| r.preflight.iter().any(|c| !c.ok && !c.warning)).count();
    let verdict = || {
        if args.check && failed > 0 {
            Err(Failure::Runtime(anyhow::anyhow!(
                "the preflight of {failed} secret(s) of {} failed",
                args.env
            )))
        } else {
            Ok(())
        }
    };
    if cli.output == OutputFormat::Json {
        print_json(&rows)?;
        return verdict();
    }
    if rows.is_empty() {
        out!("environment {} has no secrets", args.env);
        return Ok(());
    }
    let mut out = table(&[
        "SECRET",
        "STORE",
        "SERVICE",
        "KIND",
        "STRATEGY",
        "SCHEDULE",
        "NEXT START",
        "CONSTRAINTS",
        "WAITS FOR",
        "PREFLIGHT",
    ]);
    for row in &rows {
        out.add_row(vec![
            row.key.clone(),
            row.store.clone(),
            service_cell(row),
            row.kind.clone().unwrap_or_else(|| "-".into()),
            row.strategy.clone().unwrap_or_else(|| "-".into()),
            row.schedule.clone().unwrap_or_else(|| "-".into()),
            due_cell(row, now),
            constraints_cell(row),
            if row.waits.is_empty() { "-".to_owned() } else { row.waits.join("; ") },
            preflight_cell(row),
        ]);
    }
    print_table(&out);
    verdict()
}

/// `ok`, or each failed check (and warnings); `-` without a cluster.
fn preflight_cell(row: &PlanRow) -> String {
    if row.preflight.is_empty() {
        return "-".into();
    }
    let notes: Vec<String> = row
        .preflight
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            let mark = if c.warning { "warning" } else { "FAILED" };
            format!("{mark} {}: {}", c.name, c.detail)
        })
        .collect();
    if notes.is_empty() { "ok".into() } else { notes.join("; ") }
}

fn service_cell(row: &PlanRow) -> String {
    match (&row.service, &row.service_type) {
        (Some(service), Some(kind)) => {
            let name = service.trim_start_matches("svc://").split('?').next().unwrap_or_default();
            let segment =
                if row.segment == "default" { String::new() } else { format!(" @{}", row.segment) };
            format!("{name} ({kind}){segment}")
        }
        _ => "-".into(),
    }
}

/// `2026-11-29 03:00 UTC (in 15h)`, or why there is no due time.
pub fn due_cell(row: &PlanRow, now: DateTime<Utc>) -> String {
    match row.next_due {
        Some(due) => format!("{} ({})", due.format("%Y-%m-%d %H:%M UTC"), relative(due - now)),
        None => row.next_due_note.clone().unwrap_or_else(|| "-".into()),
    }
}

fn relative(delta: chrono::TimeDelta) -> String {
    let minutes = delta.num_minutes();
    match minutes {
        m if m < 60 => format!("in {m}m"),
        m if m < 48 * 60 => format!("in {}h", m / 60),
        m => format!("in {}d", m / (24 * 60)),
    }
}

fn constraints_cell(row: &PlanRow) -> String {
    let mut parts = Vec::new();
    if let Some(policy) = &row.policy {
        parts.push(format!("policy {policy}"));
    }
    if row.approval_required {
        parts.push("approval required".to_owned());
    }
    for window in &row.maintenance_windows {
        parts.push(format!("window {window}"));
    }
    if let Some(grace) = &row.grace_period {
        parts.push(format!("grace {grace}"));
    }
    if parts.is_empty() { "-".into() } else { parts.join("; ") }
}
