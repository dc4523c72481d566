//! `dsops rotate` and `dsops rotation rollback`: start runs, follow them to the end with a
//! progress bar (a spinner for one), and print how each ended.

use std::time::Duration;

use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OutputFormat, RotateArgs};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// A run as printed.
#[derive(Debug, Serialize)]
pub struct RunRow {
    /// `env/KEY`.
    pub secret: String,
    /// The run id (empty for a dry run or a skipped secret).
    pub run_id: String,
    /// The generation.
    pub generation: u64,
    /// The strategy.
    pub strategy: String,
    /// `Completed`, `RolledBack`, `Quarantined`, `Promoted` (retire pending), ...
    pub state: String,
    /// The next step, if the run is still going.
    pub step: String,
    /// Why it failed or what it waits for.
    pub detail: String,
}

fn secret_name(run: &wire::RunSummary) -> String {
    run.secret.as_ref().map(|s| format!("{}/{}", s.env, s.key)).unwrap_or_default()
}

fn row(run: &wire::RunSummary) -> RunRow {
    let mut detail = run.detail.clone();
    if run.waiting_for_agent {
        detail = format!("waiting for an agent of segment {}", run.segment);
    } else if let Some(at) = &run.not_before
        && !matches!(run.state.as_str(), "Completed" | "RolledBack" | "Quarantined")
    {
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp(at.seconds, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        detail = format!("{} due at {when}", run.step);
    }
    RunRow {
        secret: secret_name(run),
        run_id: run.run_id.clone(),
        generation: run.generation,
        strategy: run.strategy.clone(),
        state: run.state.clone(),
        step: run.step.clone(),
        detail,
    }
}

fn finished(run: &wire::RunSummary) -> bool {
    matches!(run.state.as_str(), "Completed" | "RolledBack" | "Quarantined")
}

/// Still going, but only waiting: for a grace period or backoff longer than a few seconds, or
/// for an agent that is not connected.
fn parked(run: &wire::RunSummary) -> bool {
    let now = chrono::Utc::now().timestamp();
    run.waiting_for_agent || run.not_before.as_ref().is_some_and(|t| t.seconds > now + 5)
}

/// Follows `runs` until each has ended or is only waiting.
async fn follow(
    backend: &Backend,
    runs: Vec<wire::RunSummary>,
    show_progress: bool,
) -> Result<Vec<wire::RunSummary>, Failure> {
    let ids: Vec<String> =
        runs.iter().filter(|r| !r.run_id.is_empty()).map(|r| r.run_id.clone()).collect();
    if ids.is_empty() {
        return Ok(runs);
    }
    let bar = if !show_progress {
        indicatif::ProgressBar::hidden()
    } else if ids.len() == 1 {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    } else {
        let bar = indicatif::ProgressBar::new(ids.len() as u64);
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} runs ended  {msg}",
        )
        .map_err(|e| Failure::Runtime(e.into()))?
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    };
    // An ended run does not change: ask only for the others.
    let mut ended: std::collections::HashMap<String, wire::RunSummary> =
        std::collections::HashMap::new();
    let latest = loop {
        let open: Vec<String> = ids.iter().filter(|id| !ended.contains_key(*id)).cloned().collect();
        let mut going = std::collections::HashMap::new();
        for run in backend.runs(&open).await? {
            if finished(&run) {
                ended.insert(run.run_id.clone(), run);
            } else {
                going.insert(run.run_id.clone(), run);
            }
        }
        let latest: Vec<wire::RunSummary> =
            ids.iter().filter_map(|id| ended.get(id).or_else(|| going.get(id)).cloned()).collect();
        let done = ended.len();
        bar.set_position(done as u64);
        if ids.len() == 1 {
            if let Some(run) = latest.first() {
                bar.set_message(format!(
                    "{}: {} ({})",
                    secret_name(run),
                    run.state,
                    if run.step.is_empty() { "-" } else { &run.step }
                ));
            }
        } else {
            let failed = latest
                .iter()
                .filter(|r| matches!(r.state.as_str(), "RolledBack" | "Quarantined"))
                .count();
            bar.set_message(if failed > 0 { format!("{failed} failed") } else { String::new() });
        }
        if latest.iter().all(|r| finished(r) || parked(r)) {
            break latest;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    // Keep rows for skipped secrets and dry-run lines, in the original order.
    Ok(runs
        .into_iter()
        .map(|r| {
            latest
                .iter()
                .find(|l| !r.run_id.is_empty() && l.run_id == r.run_id)
                .cloned()
                .unwrap_or(r)
        })
        .collect())
}

/// Prints runs and fails (exit 1) if any rolled back or was quarantined.
pub fn report(cli: &Cli, runs: &[wire::RunSummary], embedded: bool) -> Result<(), Failure> {
    let rows: Vec<RunRow> = runs.iter().map(row).collect();
    let failed =
        rows.iter().filter(|r| matches!(r.state.as_str(), "RolledBack" | "Quarantined")).count();
    if cli.output == OutputFormat::Json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        out!("nothing to rotate");
    } else {
        let mut t = table(&["SECRET", "RUN", "GEN", "STRATEGY", "RESULT", "DETAIL"]);
        for r in &rows {
            t.add_row(vec![
                r.secret.clone(),
                r.run_id.clone(),
                if r.generation == 0 { String::new() } else { r.generation.to_string() },
                r.strategy.clone(),
                r.state.clone(),
                r.detail.clone(),
            ]);
        }
        print_table(&t);
        if embedded
            && rows.iter().any(|r| {
                !matches!(
                    r.state.as_str(),
                    "Completed" | "RolledBack" | "Quarantined" | "Skipped" | "WouldStart"
                )
            })
        {
            out!(
                "note: runs still waiting continue the next time a dsops command runs here (embedded default)"
            );
        }
    }
    if failed > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{failed} run(s) did not complete; see `dsops rotation history` for their steps"
        )));
    }
    Ok(())
}

/// `dsops rotate`.
pub async fn run(cli: &Cli, args: &RotateArgs) -> Result<(), Failure> {
    use wire::rotate_request::Selector;
    let selector = match (&args.env, &args.key, args.all, &args.service, &args.policy) {
        (Some(env), Some(key), false, None, _) => {
            Selector::Secret(wire::SecretKey { env: env.clone(), key: key.clone() })
        }
        (Some(env), None, true, None, _) => Selector::AllDueInEnv(env.clone()),
        (None, None, false, Some(service), Some(policy)) => {
            Selector::ServicePolicy(wire::ServicePolicy {
                service_ref: service.clone(),
                policy: policy.clone(),
            })
        }
        _ => {
            return Err(Failure::invalid(
                "name what to rotate: --env E --key K, --env E --all, or --service SVC --policy P",
            ));
        }
    };
    let backend = Backend::open(cli).await?;
    let result = async {
        let request = wire::RotateRequest {
            request_id: String::new(),
            selector: Some(selector),
            force: args.force,
            dry_run: args.dry_run,
            reason: args.reason.clone().unwrap_or_default(),
        };
        let response = backend.rotate(request).await?;
        let runs = if args.dry_run || args.no_wait {
            response.runs
        } else {
            follow(&backend, response.runs, cli.output == OutputFormat::Table).await?
        };
        report(cli, &runs, backend.is_embedded())
    }
    .await;
    backend.close().await;
    result
}

/// `dsops rotation rollback`.
pub async fn rollback(cli: &Cli, env: &str, key: &str) -> Result<(), Failure> {
    let backend = Backend::open(cli).await?;
    let result = async {
        let response = backend.rollback(env, key).await?;
        let runs = follow(&backend, response.runs, cli.output == OutputFormat::Table).await?;
        report(cli, &runs, backend.is_embedded())
    }
    .await;
    backend.close().await;
    result
}
