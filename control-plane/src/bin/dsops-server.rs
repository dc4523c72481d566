//! `dsops-server`: a control-plane node.
//!
//! `init` creates a new cluster in a data directory, `join` prepares a data directory to join an
//! existing one, and `run` serves (and restarts a node from its directory).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dsops_control_plane::node::{DataDir, NodeOptions, init, join, start};

/// A dsops control-plane node.
#[derive(Debug, Parser)]
#[command(name = "dsops-server", version, max_term_width = 100)]
#[command(
    after_help = "EXAMPLES:\n  dsops-server init --data-dir /var/lib/dsops --listen 10.0.0.1:7400\n  dsops-server run --data-dir /var/lib/dsops\n  dsops-server join --data-dir /var/lib/dsops --listen 10.0.0.2:7400 --peer 10.0.0.1:7400 --token DSJ1...."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a new node keeps its state and how it is reached.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// Where the node keeps its state.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The address to listen on, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
    /// The address other nodes and clients use, if different from --listen.
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new cluster: its CAs, this node's certificate, an admin credential bundle in
    /// DATA_DIR/admin/, and a one-time join token for the next node. Then exits.
    Init {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Prepare DATA_DIR to join an existing cluster through one of its nodes, with a join token.
    /// Then exits; `run` starts the node, and the leader promotes it to voter once it has caught up.
    Join {
        #[command(flatten)]
        node: NodeArgs,
        /// Any node of the cluster, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        peer: String,
        /// The join token from `dsops-server init` or `dsops cluster token`.
        #[arg(long, env = "DSOPS_JOIN_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Serve: start (or restart) the node in DATA_DIR and run until SIGINT or SIGTERM.
    Run {
        /// Where the node keeps its state.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// How often the leader sends heartbeats, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 50)]
        heartbeat_ms: u64,
        /// The shortest election timeout in milliseconds (the longest is twice that). A follower
        /// campaigns after hearing nothing for the longest timeout plus a random one in the
        /// range. Every node of a cluster should use the same values.
        #[arg(long, value_name = "MS", default_value_t = 200)]
        election_timeout_ms: u64,
        /// How long this node keeps audit events (`400d`, `90d`, `12h`); older ones are
        /// dropped, leaving a checkpoint of the hash chain.
        #[arg(long, value_name = "DURATION", default_value = "400d")]
        audit_retention: String,
        /// The most audit events this node keeps; past it the oldest are dropped.
        #[arg(long, value_name = "N", default_value_t = 5_000_000)]
        audit_max_events: u64,
        /// How often the leader signs a checkpoint of the audit chain with the cluster's
        /// evidence key, also when nothing happened (`5m`, `1h`; 10s to 1d).
        #[arg(long, value_name = "DURATION", default_value = "5m")]
        checkpoint_every: String,
        /// Serve the reports API (HTTPS, read-only: status, history, audit, compliance
        /// reports, evidence bundles, approvals, /metrics) on this address, e.g. 0.0.0.0:9443.
        #[arg(long, value_name = "HOST:PORT")]
        reports_listen: Option<String>,
    },
    /// Check that the node of DATA_DIR is up: a mutual-TLS handshake with it on its own port,
    /// as a peer would. Exits 0 when it answers, 1 otherwise (a container or systemd health
    /// check; needs no shell).
    Health {
        /// The node's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// How long to wait for the answer, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = dsops_telemetry::init(
        "dsops-server",
        dsops_telemetry::Logs { default_filter: "info,openraft=warn", stderr: true },
    );
    let cli = Cli::parse();
    let result = run(cli).await;
    telemetry.shutdown();
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init { node: NodeArgs { data_dir, listen, advertise } } => {
            let dir = DataDir::new(&data_dir);
            let done = init(&dir, &listen, advertise.as_deref())
                .await
                .map_err(anyhow::Error::msg)
                .context("init")?;
            println!(
                "initialized node {} of a new cluster in {}",
                done.node_id,
                data_dir.display()
            );
            println!("admin credentials: {}", done.admin_dir.display());
            println!("join token (valid 1h, single use): {}", done.join_token);
            println!("start it with: dsops-server run --data-dir {}", data_dir.display());
        }
        Command::Join { node: NodeArgs { data_dir, listen, advertise }, peer, token } => {
            let dir = DataDir::new(&data_dir);
            let node_id = join(&dir, &listen, advertise.as_deref(), &peer, &token)
                .await
                .map_err(anyhow::Error::msg)
                .context("join")?;
            println!(
                "joined as node {node_id}; start it with: dsops-server run --data-dir {}",
                data_dir.display()
            );
        }
        Command::Health { data_dir, timeout } => {
            let dir = DataDir::new(&data_dir);
            let answer = dsops_control_plane::node::health::check(
                &dir,
                std::time::Duration::from_secs(timeout.clamp(1, 300)),
            )
            .await
            .map_err(anyhow::Error::msg)
            .context("health")?;
            println!("healthy: {answer}");
        }
        Command::Run {
            data_dir,
            heartbeat_ms,
            election_timeout_ms,
            audit_retention,
            audit_max_events,
            checkpoint_every,
            reports_listen,
        } => {
            let checkpoint_every = dsops_config::time::Duration::parse(&checkpoint_every)
                .ok()
                .filter(|d| (10..=86_400).contains(&d.as_secs()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--checkpoint-every {checkpoint_every:?}: expected a duration from 10s to 1d"
                    )
                })?;
            let max_age = dsops_config::time::Duration::parse(&audit_retention)
                .map_err(|e| anyhow::anyhow!("--audit-retention {audit_retention:?}: {e}"))?;
            anyhow::ensure!(audit_max_events >= 1_000, "--audit-max-events must be at least 1000");
            anyhow::ensure!(
                heartbeat_ms >= 1 && heartbeat_ms < election_timeout_ms,
                "--heartbeat-ms must be at least 1 and below --election-timeout-ms"
            );
            let dir = DataDir::new(&data_dir);
            let options = NodeOptions {
                heartbeat: std::time::Duration::from_millis(heartbeat_ms),
                election_timeout: (
                    std::time::Duration::from_millis(election_timeout_ms),
                    std::time::Duration::from_millis(election_timeout_ms * 2),
                ),
                audit_retention: dsops_control_plane::raft::AuditRetention {
                    max_age: std::time::Duration::from_secs(max_age.as_secs()),
                    max_events: audit_max_events,
                },
                checkpoint_every: std::time::Duration::from_secs(checkpoint_every.as_secs()),
                reports_listen,
                ..NodeOptions::default()
            };
            let node =
                start(&dir, None, options).await.map_err(anyhow::Error::msg).context("run")?;
            eprintln!(
                "dsops-server: node {} listening on {}",
                node.control.node_id(),
                node.address
            );
            if let Some(reports) = node.reports_address {
                eprintln!(
                    "dsops-server: reports API on https://{reports}/v1/ (OpenAPI: /v1/openapi.json)"
                );
            }
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("signal handler")?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                why = node.failed() => {
                    node.shutdown().await;
                    anyhow::bail!("node stopped: {why} (restart it once the cause is fixed)");
                }
            }
            eprintln!("dsops-server: shutting down");
            node.shutdown().await;
        }
    }
    Ok(())
}
