//! `dsops-agent`: the agent on a bastion host. It enrols once with a one-time token, then keeps
//! one outbound mTLS session with the control plane's leader and performs the rotation steps it
//! is sent, with the admin credentials and stores of its own configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use dsops_agent::host::{self as agent_host, AgentLink, AgentRun};
use dsops_agent::session::SessionState;

/// The dsops agent.
#[derive(Debug, Parser)]
#[command(name = "dsops-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrol with a one-time token from `dsops agent token create`.
    #[command(
        after_help = "EXAMPLES:\n  DSOPS_AGENT_TOKEN=DSA1.… dsops-agent enroll --server cp-1.internal:7400 --data-dir /var/lib/dsops-agent"
    )]
    Enroll {
        /// A control-plane node's API address, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// The enrolment token (prefer the environment variable: it stays out of shell history).
        #[arg(long, env = "DSOPS_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// Where the agent keeps its sealed state and key.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The host name shown to operators (default: this host's name).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// Run: keep the session with the control plane and perform the steps it sends.
    Run {
        /// The agent's data directory (from `enroll`).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The configuration naming this segment's stores and services (dsops.yaml format).
        #[arg(long, short = 'f', value_name = "FILE")]
        config: PathBuf,
        /// More control-plane addresses to try besides the enrolled one.
        #[arg(long = "server", value_name = "HOST:PORT")]
        servers: Vec<String>,
        /// Only change these services (repeat; default: every service of the segment). A job
        /// for another one is refused with a signed receipt.
        #[arg(long = "allow-service", value_name = "NAME")]
        allow_services: Vec<String>,
        /// Only run these strategies (repeat; default: all).
        #[arg(long = "allow-strategy", value_name = "NAME")]
        allow_strategies: Vec<String>,
    },
    /// Show the enrolled identity (never a key).
    Status {
        /// The agent's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let telemetry = dsops_telemetry::init(
        "dsops-agent",
        dsops_telemetry::Logs { default_filter: "info", stderr: true },
    );
    let result = run(Cli::parse()).await;
    telemetry.shutdown();
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Enroll { server, token, data_dir, hostname } => {
            let hostname = hostname.unwrap_or_else(host_name);
            let state = agent_host::enroll(&data_dir, &server, &token, &hostname)
                .await
                .context("enroll")?;
            println!(
                "enrolled as {} in segment {}; start it with: dsops-agent run --data-dir {} --config dsops.yaml",
                state.agent_id,
                state.segment,
                data_dir.display()
            );
        }
        Command::Status { data_dir } => {
            let state = AgentLink::load(&data_dir)?.state();
            println!("agent:    {}", state.agent_id);
            println!("segment:  {}", state.segment);
            println!("servers:  {}", state.servers.join(", "));
            let expires = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
                state.cert_not_after_ms as i64,
            )
            .map_or("-".to_owned(), |t| t.to_rfc3339());
            println!("certificate expires: {expires}");
        }
        Command::Run { data_dir, config, servers, allow_services, allow_strategies } => {
            let loaded = dsops_config::config::load_file(&config).map_err(|diagnostics| {
                let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                anyhow!("{}\n{} problem(s) in {}", text.join("\n"), text.len(), config.display())
            })?;
            let base_dir = config.parent().map(PathBuf::from).unwrap_or_default();
            let set = |list: Vec<String>| (!list.is_empty()).then(|| list.into_iter().collect());
            let run = AgentRun {
                data_dir,
                servers,
                backoff: (Duration::from_millis(200), Duration::from_secs(30)),
                policy: dsops_agent::config::AgentPolicy {
                    services: set(allow_services),
                    strategies: set(allow_strategies),
                },
            };
            let agent = agent_host::start(&run, &loaded, &base_dir, None)?;
            eprintln!("dsops-agent: {} starting", agent.agent_id);
            let mut state = agent.state.clone();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                tokio::select! {
                    changed = state.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        match state.borrow_and_update().clone() {
                            SessionState::Connected { address, .. } => {
                                eprintln!("dsops-agent: session open with the leader at {address}");
                            }
                            SessionState::Disconnected { reason, failures } => {
                                eprintln!("dsops-agent: not connected ({reason}); attempt {failures}");
                            }
                        }
                    }
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                }
            }
            agent.stop().await;
        }
    }
    Ok(())
}
