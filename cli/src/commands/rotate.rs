//! `dsops rotate` and `dsops rotation rollback`: start runs, follow them to the end with a
//! progress bar (a spinner for one), and print how each ended.

use std::time::Duration;

use dsops_proto::wire::admin as wire;
use serde::Serialize;

use dsops_cli::follow::{self, finished, parked, secret_name};

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

fn row(run: &wire::RunSummary) -> RunRow {
    let mut detail = run.detail.clone();
    if follow::awaiting_approval(run) {
        detail = format!("awaits {}", follow::approval_state(run));
    } else if run.waiting_for_agent {
        detail = format!("waiting for an agent of segment {}", run.segment);
    } else if let Some(at) = &run.not_before
        && !finished(run)
    {
        let when = chrono::DateTime::<chrono::Utc>::from_timestamp(at.seconds, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let step = follow::next_step(run).map(|s| s.to_string()).unwrap_or_default();
        detail = format!("{step} due at {when}");
    }
    RunRow {
        secret: secret_name(run),
        run_id: run.run_id.clone(),
        generation: run.generation,
        strategy: run.strategy.clone(),
        state: follow::status(run).name().to_owned(),
        step: follow::next_step(run).map(|s| s.to_string()).unwrap_or_default(),
        detail,
    }
}

/// When to stop following a run.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// It ended or only waits (a long backoff or grace period, an absent agent): this command's
    /// own runs, which a cluster carries on without us.
    EndedOrWaiting,
    /// Nothing keeps a credential from working any more ([`follow::settled`]), or the limit
    /// passed: a run that was in flight before this command, which it waits for.
    Settled(Duration),
}

/// Follows `runs` until each has ended or is only waiting (see [`Until`]).
async fn follow(
    backend: &Backend,
    runs: Vec<wire::RunSummary>,
    show_progress: bool,
    until: Until,
) -> Result<Vec<wire::RunSummary>, Failure> {
    let ids: Vec<String> =
        runs.iter().filter(|r| !r.run_id.is_empty()).map(|r| r.run_id.clone()).collect();
    if ids.is_empty() {
        return Ok(runs);
    }
    let bar = if !show_progress {
        indicatif::ProgressBar::hidden()
    } else if ids.len() == 1 {
        follow::spinner()
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
    let started = std::time::Instant::now();
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
                let waiting = if matches!(until, Until::Settled(_)) {
                    format!("waiting for run {}, in flight before this command: ", run.run_id)
                } else {
                    String::new()
                };
                bar.set_message(format!(
                    "{waiting}{}: {}",
                    secret_name(run),
                    follow::position(run)
                ));
            }
        } else {
            let failed = latest.iter().filter(|r| follow::status(r).is_failure()).count();
            bar.set_message(if failed > 0 { format!("{failed} failed") } else { String::new() });
        }
        let done = match until {
            Until::EndedOrWaiting => latest.iter().all(|r| finished(r) || parked(r)),
            Until::Settled(limit) => {
                started.elapsed() >= limit || latest.iter().all(follow::settled)
            }
        };
        if done {
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
    let failed = runs.iter().filter(|r| follow::status(r).is_failure()).count();
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
        let awaiting: Vec<&wire::RunSummary> =
            runs.iter().filter(|r| follow::awaiting_approval(r)).collect();
        if !awaiting.is_empty() {
            out!(
                "{} run(s) await approval; an approver runs `dsops approval approve RUN` (see `dsops approval list`)",
                awaiting.len()
            );
        }
        if embedded && runs.iter().any(|r| follow::status(r).is_in_flight()) {
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
        // `dsops rotate --env E --dry-run`: what is due in E, as --all would start it.
        (Some(env), None, false, None, _) if args.dry_run => Selector::AllDueInEnv(env.clone()),
        (None, None, false, Some(service), Some(policy)) => {
            Selector::ServicePolicy(wire::ServicePolicy {
                service_ref: service.clone(),
                policy: policy.clone(),
            })
        }
        _ => {
            return Err(Failure::invalid(
                "name what to rotate: --env E --key K, --env E --all, or --service SVC --policy P (--env E --dry-run shows what is due)",
            ));
        }
    };
    let single = matches!(selector, Selector::Secret(_));
    let backend = Backend::open(cli).await?;
    let result = async {
        let mut request = wire::RotateRequest {
            request_id: String::new(),
            selector: Some(selector),
            force: args.force,
            dry_run: args.dry_run,
            reason: args.reason.clone().unwrap_or_default(),
            only: Vec::new(),
            break_glass: args.break_glass,
        };
        let show = cli.output == OutputFormat::Table;
        let mut rows = Vec::new();
        // A secret whose run was in flight is asked for again once that run has ended: a few
        // rounds at most (another run can start meanwhile, from the scheduler or an operator).
        for round in 1..=IN_FLIGHT_ROUNDS {
            let response = backend.rotate(request.clone()).await?;
            rows.extend(if args.dry_run || args.no_wait {
                response.runs
            } else {
                follow(&backend, response.runs, show, Until::EndedOrWaiting).await?
            });
            if response.in_flight.is_empty() || args.dry_run {
                break;
            }
            let last_round = round == IN_FLIGHT_ROUNDS || args.no_wait;
            let waited = if last_round {
                response.in_flight
            } else {
                for run in &response.in_flight {
                    eprintln!(
                        "note: run {} of {} was already in flight ({}); waiting for it to end",
                        run.run_id,
                        secret_name(run),
                        follow::position(run)
                    );
                }
                follow(&backend, response.in_flight, show, Until::Settled(IN_FLIGHT_WAIT)).await?
            };
            let mut again = Vec::new();
            for run in waited {
                if finished(&run) && !last_round {
                    eprintln!(
                        "note: run {} of {} ended: {}",
                        run.run_id,
                        secret_name(&run),
                        follow::status(&run)
                    );
                    again.extend(run.secret.clone());
                    continue;
                }
                let why = format!("run {} is in flight ({})", run.run_id, follow::position(&run));
                if single {
                    return Err(Failure::Runtime(anyhow::anyhow!(
                        "{}: not rotated: {why}; rotate it again once that run has ended",
                        secret_name(&run)
                    )));
                }
                rows.push(wire::RunSummary {
                    secret: run.secret.clone(),
                    not_started: wire::NotStarted::Skipped.into(),
                    detail: why,
                    ..wire::RunSummary::default()
                });
            }
            if again.is_empty() {
                break;
            }
            request.only = again;
        }
        report(cli, &rows, backend.is_embedded())
    }
    .await;
    backend.close().await;
    result
}

/// How many times `rotate` asks again for secrets whose runs were in flight.
const IN_FLIGHT_ROUNDS: usize = 3;
/// How long `rotate` waits, at most, for a run that was in flight before it.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(120);

/// `dsops rotation rollback`.
pub async fn rollback(cli: &Cli, env: &str, key: &str) -> Result<(), Failure> {
    let backend = Backend::open(cli).await?;
    let result = async {
        let response = backend.rollback(env, key).await?;
        if let Some(run) = response.in_flight.first() {
            return Err(Failure::Runtime(anyhow::anyhow!(
                "{env}/{key}: not rolled back: run {} is in flight ({}); roll back once it has ended",
                run.run_id,
                follow::position(run)
            )));
        }
        let show = cli.output == OutputFormat::Table;
        let runs = follow(&backend, response.runs, show, Until::EndedOrWaiting).await?;
        report(cli, &runs, backend.is_embedded())
    }
    .await;
    backend.close().await;
    result
}
