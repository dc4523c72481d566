//! The agent-session benchmark: N simulated agents (real enrolment, real mTLS sessions, the real
//! session client) on a 3-node cluster of `dsops-server` processes. It prints the leader's
//! memory before and with the sessions, its CPU while the sessions idle on heartbeats, and the
//! time until every session is re-established after the leader is SIGKILLed. Figures are printed,
//! not asserted. `scripts/bench-agents.sh` builds release binaries and runs this.
//!
//! Usage: dsops-bench-agents --server-bin PATH [--agents 1000] [--idle-seconds 20]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use dsops_agent::host::{self, AgentRun, RunningAgent};
use dsops_agent::session::SessionState;
use dsops_cli::embedded::random_id;
use dsops_proto::wire::admin as wire;
use dsops_tests::processes::ProcessCluster;
use dsops_tests::usage;
use tokio::sync::Semaphore;

struct Args {
    server_bin: PathBuf,
    agents: usize,
    idle_seconds: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { server_bin: PathBuf::new(), agents: 1000, idle_seconds: 20 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--server-bin" => args.server_bin = PathBuf::from(value()?),
            "--agents" => args.agents = value()?.parse().context("--agents")?,
            "--idle-seconds" => args.idle_seconds = value()?.parse().context("--idle-seconds")?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(args.server_bin.is_file(), "--server-bin must name the dsops-server binary");
    Ok(args)
}

/// Leaves process `pid` alone for `seconds`: its resident memory (KiB) at the start, and the
/// share of one core it used meanwhile.
async fn idle_usage(pid: u32, seconds: u64) -> anyhow::Result<(u64, f64)> {
    let pid = pid.to_string();
    let rss = usage::rss_kib(&pid)?;
    let (window, start) = (Instant::now(), usage::cpu_ms(&pid)?);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = usage::cpu_ms(&pid)?.saturating_sub(start);
    Ok((rss, used as f64 / 1000.0 / window.elapsed().as_secs_f64()))
}

async fn wait_all(
    agents: &[RunningAgent],
    what: &str,
    deadline: Duration,
    done: impl Fn(&SessionState) -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let ready = agents.iter().filter(|a| done(&a.state.borrow())).count();
        if ready == agents.len() {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < deadline,
            "{what}: only {ready} of {} within {deadline:?}",
            agents.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_any(agents: &[RunningAgent], deadline: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if agents.iter().any(|a| matches!(&*a.state.borrow(), SessionState::Connected { sessions, .. } if *sessions >= 2)) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < deadline, "no session re-established");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args()?;
    println!("# dsops agent-session benchmark: {} agents, 3 dsops-server processes", args.agents);
    let mut cluster = ProcessCluster::start(&args.server_bin, 3).await?;
    let leader_address = cluster.leader_address().await?;
    let leader = cluster.id_of(&leader_address).context("leader id")?;
    let pid = cluster.pid(leader).context("leader pid")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, cpu_before) = idle_usage(pid, args.idle_seconds).await?;

    let work = tempfile::tempdir()?;
    let config = work.path().join("dsops.yaml");
    std::fs::write(&config, "version: 1\nsecretStores:\n  local: { type: file }\n")?;
    let loaded =
        dsops_config::config::load_file(&config).map_err(|d| anyhow!("bench config: {d:?}"))?;
    let admin = cluster.admin(&leader_address);

    // Enrol every agent (16 at a time): a token each, then the agent's own enrolment.
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(16));
    let mut enrolments = tokio::task::JoinSet::new();
    for n in 0..args.agents {
        let (limit, mut admin, address) = (limit.clone(), admin.clone(), leader_address.clone());
        let dir = work.path().join(format!("agent-{n}"));
        enrolments.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let token = admin
                .create_agent_token(wire::CreateAgentTokenRequest {
                    request_id: random_id(),
                    segment: "default".into(),
                    ttl_seconds: 600,
                })
                .await?
                .into_inner()
                .token;
            host::enroll(&dir, &address, &token, &format!("sim-{n}")).await?;
            anyhow::Ok(dir)
        });
    }
    let mut dirs = Vec::new();
    while let Some(done) = enrolments.join_next().await {
        dirs.push(done??);
    }
    println!("enrolled {} agents in {:.1}s", dirs.len(), started.elapsed().as_secs_f64());

    let servers: Vec<String> = cluster.nodes.iter().map(|n| n.address.clone()).collect();
    let started = Instant::now();
    let mut agents = Vec::new();
    for dir in &dirs {
        let run = AgentRun {
            data_dir: dir.clone(),
            servers: servers.clone(),
            backoff: (Duration::from_millis(200), Duration::from_secs(5)),
            policy: Default::default(),
        };
        agents.push(host::start(&run, &loaded, work.path(), None)?);
    }
    let connect = wait_all(&agents, "sessions", Duration::from_secs(120), |s| {
        matches!(s, SessionState::Connected { .. })
    })
    .await?;
    println!(
        "sessions established: {} in {:.2}s (from {:.2}s after start)",
        agents.len(),
        connect.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let listed = admin.clone().list_agents(wire::ListAgentsRequest {}).await?.into_inner().agents;
    let connected = listed.iter().filter(|a| a.connected).count();
    println!("leader lists {connected} connected agents");

    // Idle: only heartbeats (every 5 s per session) and the sessions' revocation watch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_with, cpu) = idle_usage(pid, args.idle_seconds).await?;
    println!(
        "leader memory: {:.1} MiB before sessions, {:.1} MiB with {} sessions ({:.1} KiB per session)",
        rss_before as f64 / 1024.0,
        rss_with as f64 / 1024.0,
        agents.len(),
        (rss_with.saturating_sub(rss_before)) as f64 / agents.len() as f64
    );
    println!(
        "leader CPU over {}s: {:.1}% of one core with no agents (raft heartbeats), {:.1}% with {} idle sessions (target: within 10%)",
        args.idle_seconds,
        cpu_before * 100.0,
        cpu * 100.0,
        agents.len()
    );

    // Leader change: SIGKILL the leader; every agent must find the new one.
    let killed = Instant::now();
    cluster.kill(leader)?;
    let first = wait_any(&agents, Duration::from_secs(120)).await?;
    let _ = wait_all(&agents, "re-established sessions", Duration::from_secs(120), |s| {
        matches!(s, SessionState::Connected { sessions, address } if *sessions >= 2 && *address != leader_address)
    })
    .await?;
    println!(
        "after SIGKILL of the leader: first session re-established with the new leader at {:.2}s, all {} at {:.2}s",
        first.as_secs_f64(),
        agents.len(),
        killed.elapsed().as_secs_f64()
    );
    for agent in agents {
        agent.kill();
    }
    Ok(())
}
