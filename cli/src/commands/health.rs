//! `dsops rotation health`: how an environment's rotations stand, from the node's metrics; with
//! `--export prometheus`, the metrics themselves, for a node-exporter textfile collector.

use clap::ValueEnum;
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OutputFormat};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// What `--export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HealthExport {
    /// The Prometheus text format (what `/metrics` serves).
    Prometheus,
}

/// One figure of the health table.
#[derive(Debug, Serialize)]
struct Figure {
    what: &'static str,
    value: f64,
}

/// The values of `family`'s samples in `text` (the Prometheus text format) whose line
/// contains `with`.
fn samples(text: &str, family: &str, with: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(with))
        .filter(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .collect()
}

/// Runs `dsops rotation health`.
pub async fn run(
    cli: &Cli,
    env: Option<&str>,
    export: Option<HealthExport>,
) -> Result<(), Failure> {
    let backend = Backend::open(cli).await?;
    let request = wire::GetMetricsRequest { env: env.unwrap_or_default().to_owned() };
    let response = backend.metrics(request).await;
    backend.close().await;
    let text = response?.text;
    if export == Some(HealthExport::Prometheus) {
        print!("{text}");
        return Ok(());
    }
    let count = |family: &str| samples(&text, family, "").iter().fold(0.0, |a, b| a + b);
    let completed: f64 = samples(&text, "dsops_rotations_total", "result=\"Completed\"")
        .iter()
        .fold(0.0, |a, b| a + b);
    let figures = vec![
        Figure { what: "secrets", value: samples(&text, "dsops_secret_overdue", "").len() as f64 },
        Figure { what: "overdue", value: count("dsops_secret_overdue") },
        Figure { what: "runs in flight", value: count("dsops_runs_in_flight") },
        Figure { what: "awaiting approval", value: count("dsops_runs_awaiting_approval") },
        Figure { what: "quarantined", value: count("dsops_runs_quarantined") },
        Figure { what: "rotations completed", value: completed },
        Figure {
            what: "rotations ended otherwise",
            value: count("dsops_rotations_total") - completed,
        },
        Figure { what: "agents connected", value: count("dsops_agents_connected") },
        Figure { what: "notifications waiting", value: count("dsops_notifications_backlog") },
        Figure { what: "raft term", value: count("dsops_raft_term") },
        Figure { what: "raft applied index", value: count("dsops_raft_applied_index") },
    ];
    if cli.output == OutputFormat::Json {
        return print_json(&figures);
    }
    let mut t = table(&["", ""]);
    for f in &figures {
        t.add_row(vec![f.what.to_owned(), f.value.to_string()]);
    }
    print_table(&t);
    Ok(())
}
