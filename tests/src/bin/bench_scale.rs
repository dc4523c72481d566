//! `dsops-bench-scale`: a configuration of `--secrets` secrets (default 100,000) over 10
//! environments and 200 database services, on a 3-node cluster (in-process, mutual TLS on
//! loopback) with one agent. Prints, in order:
//!
//! - `dsops apply`'s time, the size of the `store_config` command and the parts it goes to the log in;
//! - `rotation status --env` over one environment (a tenth of the secrets), whole and one page;
//! - resident memory (this process holds the 3 nodes and the agent; with `--server BINARY`, the
//!   same configuration is also applied to 3 `dsops-server` processes and each one's resident
//!   memory is read from `/proc`);
//! - `--rotations` `random` rotations (default 10,000) end to end, rotations per second;
//! - a snapshot of the whole state: its size and build time, then the time a new node takes to
//!   join and catch up by installing it.
//!
//! The scheduler's tick at 1,000 / 10,000 / 100,000 agenda entries is `dsops-bench-scheduler`.
//! Asserts nothing beyond every rotation completing.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use dsops_cli::embedded::{attach_agent, random_id};
use dsops_config::config::{CatalogFiles, load_with};
use dsops_proto::wire::admin as wire;
use dsops_state::Request;
use dsops_tests::cluster::fast_options;
use dsops_tests::processes::ProcessCluster;
use dsops_tests::usage;
use dsops_tests::{RunView, TestCluster};

const ENVS: usize = 10;
const SERVICES: usize = 200;

struct Args {
    secrets: usize,
    rotations: usize,
    server: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args { secrets: 100_000, rotations: 10_000, server: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secrets" => args.secrets = value()?.parse()?,
            "--rotations" => args.rotations = value()?.parse()?,
            "--server" => args.server = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!(
                    "dsops-bench-scale [--secrets N] [--rotations N] [--server DSOPS_SERVER_BINARY]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(args.secrets >= ENVS, "--secrets must be at least {ENVS}");
    anyhow::ensure!(
        args.rotations <= args.secrets / ENVS,
        "--rotations can be at most the first environment's {} secrets",
        args.secrets / ENVS
    );
    Ok(args)
}

/// `secrets` secrets in environments `e00`..`e09`, one line each. In `e00` every secret is
/// `random` (the rotations run there); elsewhere one in four is a database password
/// (`immediate`, on one of 200 PostgreSQL services, never contacted) and the rest `random`.
fn configuration(secrets: usize) -> String {
    let mut yaml = String::from("version: 1\nsecretStores:\n  l: { type: file }\nservices:\n");
    for s in 0..SERVICES {
        let _ = writeln!(
            yaml,
            "  pg{s:03}: {{ type: postgresql, host: db{s:03}.internal, port: 5432, database: app, admin_store: \"store://l/admin/pg{s:03}\" }}"
        );
    }
    yaml.push_str("envs:\n");
    let per_env = secrets / ENVS;
    for e in 0..ENVS {
        let _ = writeln!(yaml, "  e{e:02}:");
        for i in 0..per_env {
            if e > 0 && i % 4 == 0 {
                let s = (e * per_env + i) % SERVICES;
                let _ = writeln!(
                    yaml,
                    "    D{i:06}: {{ from: {{ store: \"store://l/e{e}/d{i}#password\", service: \"svc://pg{s:03}?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: u{e}x{i} }} }} }}"
                );
            } else {
                let _ = writeln!(
                    yaml,
                    "    S{i:06}: {{ from: {{ store: \"store://l/e{e}/s{i}#v\" }}, rotation: {{ strategy: random }} }}"
                );
            }
        }
    }
    yaml
}

/// The bytes of the `store_config` command the leader would propose, as a log entry frames it,
/// and how many parts of at most [`dsops_state::CONFIG_PART_BYTES`] it goes to the log in.
fn entry_bytes(yaml: &str) -> anyhow::Result<(usize, usize)> {
    let catalog = Default::default();
    let loaded = load_with(yaml, "dsops.yaml", CatalogFiles::Given(&catalog)).map_err(|d| {
        anyhow!("the generated configuration is invalid: {:?}", &d[..d.len().min(3)])
    })?;
    let payload = dsops_state::ConfigPayload {
        config_yaml: yaml.to_owned(),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        fingerprints: loaded.fingerprints,
        expected_version: Some(0),
        history_bytes: Some(dsops_state::CONFIG_HISTORY_BYTES),
    };
    let parts = dsops_state::split_payload(&payload).map_or(0, |(parts, _)| parts.len());
    let request = Request {
        request_id: random_id(),
        actor: "admin".into(),
        proposed_at_ms: 0,
        command: payload.into_command(),
    };
    let bytes = dsops_state::log_format::frame(&serde_json::to_vec(&vec![request])?).len();
    Ok((bytes, parts))
}

fn apply_request(yaml: &str) -> wire::ApplyConfigRequest {
    wire::ApplyConfigRequest {
        request_id: random_id(),
        config_yaml: yaml.to_owned(),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    }
}

/// Resident and peak resident memory of a process, in MB.
fn memory(pid: &str) -> String {
    let mb = |kib: anyhow::Result<u64>| {
        kib.map_or_else(|_| "?".to_owned(), |kib| format!("{:.0} MB", kib as f64 / 1024.0))
    };
    format!("resident {}, peak {}", mb(usage::rss_kib(pid)), mb(usage::peak_rss_kib(pid)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    ms(times[times.len() / 2])
}

async fn status(
    admin: &mut dsops_proto::wire::admin::admin_client::AdminClient<tonic::transport::Channel>,
    expected: usize,
) -> anyhow::Result<()> {
    let request = |size: u32, token: String| wire::RotationStatusRequest {
        env: "e00".into(),
        page_size: size,
        page_token: token,
    };
    let (mut whole, mut page) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        let (mut rows, mut token) = (0, String::new());
        loop {
            let reply = admin.rotation_status(request(10_000, token)).await?.into_inner();
            rows += reply.secrets.len();
            if reply.next_page_token.is_empty() {
                break;
            }
            token = reply.next_page_token;
        }
        whole.push(started.elapsed());
        anyhow::ensure!(rows == expected, "{rows} rows for {expected} secrets");
        let started = Instant::now();
        admin.rotation_status(request(1_000, String::new())).await?;
        page.push(started.elapsed());
    }
    println!(
        "rotation status --env e00 ({expected} secrets): whole {:.1} ms, one page of 1,000 {:.1} ms (medians of 5)",
        median(whole),
        median(page)
    );
    Ok(())
}

/// Rotates the first `n` secrets of `e00` and waits until every run completed.
async fn rotations(cluster: &TestCluster, leader: u64, n: usize) -> anyhow::Result<()> {
    let mut admin = cluster.admin_client(leader);
    let started = Instant::now();
    let reply = admin
        .rotate(wire::RotateRequest {
            request_id: random_id(),
            selector: Some(wire::rotate_request::Selector::AllDueInEnv("e00".into())),
            force: true,
            dry_run: false,
            reason: "benchmark".into(),
            only: (0..n)
                .map(|i| wire::SecretKey { env: "e00".into(), key: format!("S{i:06}") })
                .collect(),
            break_glass: false,
        })
        .await?
        .into_inner();
    let mut open: Vec<String> = reply.runs.into_iter().map(|r| r.run_id).collect();
    anyhow::ensure!(open.len() == n, "started {} runs for {n} secrets", open.len());
    let requested = started.elapsed();
    while !open.is_empty() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut still = Vec::new();
        for chunk in open.chunks(dsops_proto::domain::MAX_RUN_IDS) {
            let runs = admin
                .get_runs(wire::GetRunsRequest { run_ids: chunk.to_vec(), with_steps: false })
                .await?
                .into_inner()
                .runs;
            for run in runs {
                if !run.is_finished() {
                    still.push(run.run_id);
                } else if run.state_name() != "Completed" {
                    anyhow::bail!("run {} ended {}: {}", run.run_id, run.state_name(), run.detail);
                }
            }
        }
        open = still;
    }
    let elapsed = started.elapsed();
    println!(
        "{n} random rotations end to end: {:.1} s, {:.0} rotations/s (the request that started them: {:.0} ms)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        ms(requested)
    );
    Ok(())
}

/// Builds a snapshot on the leader, then joins a node that must install it.
async fn snapshot(cluster: &mut TestCluster, leader: u64) -> anyhow::Result<()> {
    let control = cluster.control(leader);
    let bytes = control.read_local(|s| dsops_state::encode_snapshot(s).len()).await;
    let applied = control.raft().metrics().borrow().last_applied.map_or(0, |l| l.index);
    let started = Instant::now();
    control.raft().trigger().snapshot().await.map_err(|e| anyhow!("snapshot: {e}"))?;
    let mut metrics = control.raft().metrics();
    metrics
        .wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied))
        .await
        .map_err(|e| anyhow!("snapshot: {e}"))?;
    let built = started.elapsed();
    // A long-running cluster has purged its log up to (nearly) its snapshot; purge it here so a
    // new node must install the snapshot rather than replay the log.
    let covered = control.raft().metrics().borrow().snapshot.map_or(0, |s| s.index);
    control.raft().trigger().purge_log(covered).await.map_err(|e| anyhow!("purge: {e}"))?;
    let purged = tokio::time::timeout(
        Duration::from_secs(30),
        metrics.wait_for(|m| m.purged.is_some_and(|p| p.index >= covered)),
    )
    .await
    .is_ok();
    anyhow::ensure!(purged, "the leader did not purge its log up to the snapshot");
    let target = control.raft().metrics().borrow().last_applied.map_or(0, |l| l.index);
    let started = Instant::now();
    let id = cluster.add_node().await;
    let mut metrics = cluster.control(id).raft().metrics();
    metrics
        .wait_for(|m| m.last_applied.is_some_and(|l| l.index >= target))
        .await
        .map_err(|e| anyhow!("catch up: {e}"))?;
    let joined = started.elapsed();
    let installed = cluster.control(id).raft().metrics().borrow().snapshot.is_some();
    println!(
        "snapshot at log index {covered}: {:.1} MB, built in {:.0} ms on the leader; a new node joined and caught up in {:.0} ms ({})",
        bytes as f64 / 1e6,
        ms(built),
        ms(joined),
        if installed {
            "by installing the snapshot"
        } else {
            "from the log: no snapshot installed"
        }
    );
    Ok(())
}

/// The same configuration applied to 3 `dsops-server` processes: each one's resident memory.
async fn processes(binary: &std::path::Path, yaml: &str) -> anyhow::Result<()> {
    let cluster = ProcessCluster::start(binary, 3).await?;
    let leader = cluster.leader_address().await?;
    let started = Instant::now();
    cluster
        .admin(&leader)
        .max_encoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE)
        .apply_config(apply_request(yaml))
        .await?;
    let applied = started.elapsed();
    // Every node applies it and loads it; give the followers a moment to catch up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("3 dsops-server processes: apply {:.0} ms", ms(applied));
    for id in 1..=3 {
        let pid = cluster.pid(id).context("a node is not running")?;
        println!("  node {id}: {}", memory(&pid.to_string()));
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args()?;
    let yaml = configuration(args.secrets);
    let (entry, parts) = entry_bytes(&yaml)?;
    println!(
        "{} secrets in {ENVS} environments, {SERVICES} services: {:.2} MB of YAML, a store_config of {:.2} MB, proposed in {parts} parts",
        args.secrets,
        yaml.len() as f64 / 1e6,
        entry as f64 / 1e6
    );
    println!("this process at the start: {}", memory("self"));

    let mut cluster = TestCluster::start_with(3, fast_options()).await;
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);
    let started = Instant::now();
    admin.apply_config(apply_request(&yaml)).await.context("apply")?;
    println!(
        "apply: {:.0} ms (validation on the leader, replication, apply)",
        ms(started.elapsed())
    );
    println!("3 nodes in this process, after apply: {}", memory("self"));
    status(&mut admin, args.secrets / ENVS).await?;

    let dir = tempfile::tempdir()?;
    let catalog = Default::default();
    let loaded = load_with(&yaml, "dsops.yaml", CatalogFiles::Given(&catalog))
        .map_err(|_| anyhow!("the generated configuration is invalid"))?;
    let mut agent_config =
        dsops_agent::from_config::agent_config(&loaded, &dir.path().join(".dsops"), dir.path())?;
    agent_config.max_concurrent_jobs = 64;
    drop(loaded);
    let key = dir.path().join(".dsops/agent/bench.key");
    let agent =
        attach_agent(cluster.control(leader), "bench-agent", "default", &key, agent_config, None)
            .await?;
    if args.rotations > 0 {
        rotations(&cluster, leader, args.rotations).await?;
    }
    println!("3 nodes and the agent in this process, after the rotations: {}", memory("self"));
    snapshot(&mut cluster, leader).await?;
    agent.abort();
    cluster.shutdown().await;

    if let Some(binary) = &args.server {
        processes(binary, &yaml).await?;
    }
    Ok(())
}
