//! `dsops-bench-rotation`: rotate N PostgreSQL roles (`immediate`) through the embedded default
//! and through a 3-node cluster with an agent, against a baseline program that runs the same
//! ALTER ROLE + fresh-login loop directly with the same concurrency. Prints rotations per second
//! and the ratios; asserts nothing. `scripts/bench-rotation.sh` starts PostgreSQL and runs it.

use dsops_tests::RunView;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use dsops_agent::SecretValue;
use dsops_agent::adapter::{Login, PasswordTarget, PostgresAdapter};
use dsops_agent::config::AgentConfig;
use dsops_agent::from_config::open_store;
use dsops_agent::generate::{Generate, ValueFormat};
use dsops_cli::embedded::{Embedded, EmbeddedOptions, attach_agent, random_id};
use dsops_config::config::load_file;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::databases::{Flavor, ServerUrl};
use dsops_tests::usage::{self, machine_busy_ms};
use dsops_tests::{TestCluster, unique_name};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};

struct Args {
    roles: usize,
    concurrency: usize,
    modes: Vec<String>,
    trials: usize,
    /// How the cores are shared, for the summary (`scripts/bench-rotation.sh` pins them).
    cores: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        roles: 1000,
        concurrency: 8,
        modes: vec!["baseline".into(), "embedded".into(), "cluster".into()],
        trials: 1,
        cores: "shared".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--roles" => args.roles = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--modes" => args.modes = value()?.split(',').map(str::to_owned).collect(),
            "--trials" => {
                args.trials = value()?.parse()?;
                anyhow::ensure!(args.trials > 0, "--trials must be at least 1");
            }
            "--cores" => args.cores = value()?,
            "--help" | "-h" => {
                println!(
                    "dsops-bench-rotation [--roles N] [--concurrency N] [--modes baseline,embedded,cluster] [--trials N] [--cores LABEL]   (needs DSOPS_TEST_PG_URL)"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

fn password() -> String {
    let format = ValueFormat::parse(Some("^[A-Za-z0-9_-]{32,64}$")).expect("format");
    format.generate(32).expect("random").expose().to_owned()
}

/// A timed section: wall time and CPU (machine-wide and this process), in ms.
#[derive(Debug, Clone, Copy)]
struct Timing {
    elapsed: Duration,
    machine_ms: u64,
    process_ms: u64,
}

/// Seconds since boot (`CLOCK_BOOTTIME`, as `perf record -k boottime` stamps samples).
fn boot_seconds() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// With `DSOPS_BENCH_WINDOW` set, prints where a timed section starts or stops, for
/// `perf report --time START,STOP` of a `perf record -k boottime` run.
fn mark_window(what: &str) {
    if std::env::var_os("DSOPS_BENCH_WINDOW").is_some() {
        eprintln!("window {what} {}", boot_seconds());
    }
}

/// Starts timing a section.
fn start_timing() -> (Instant, u64, u64) {
    mark_window("start");
    (Instant::now(), machine_busy_ms(), process_cpu_ms())
}

fn stop_timing(started: (Instant, u64, u64)) -> Timing {
    mark_window("stop");
    Timing {
        elapsed: started.0.elapsed(),
        machine_ms: machine_busy_ms().saturating_sub(started.1),
        process_ms: process_cpu_ms().saturating_sub(started.2),
    }
}

/// The baseline: ALTER ROLE with a new password, then a fresh login with it, `concurrency` at a
/// time, straight from one program.
async fn baseline(url: &ServerUrl, roles: &[String], concurrency: usize) -> anyhow::Result<Timing> {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect_with(
            sqlx::postgres::PgConnectOptions::new()
                .host(&url.host)
                .port(url.port)
                .username(&url.user)
                .password(&url.password)
                .database("postgres")
                .disable_statement_logging(),
        )
        .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let roles = Arc::new(roles.to_vec());
    let started = start_timing();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (admin, next, roles, url) = (admin.clone(), next.clone(), roles.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(role) = roles.get(i) else { return anyhow::Ok(()) };
                let new = password();
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "ALTER ROLE \"{role}\" WITH PASSWORD '{new}'"
                )))
                .execute(&admin)
                .await?;
                let conn = sqlx::postgres::PgConnectOptions::new()
                    .host(&url.host)
                    .port(url.port)
                    .username(role)
                    .password(&new)
                    .database("postgres")
                    .disable_statement_logging()
                    .connect()
                    .await?;
                conn.close().await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(stop_timing(started))
}

fn config_yaml(url: &ServerUrl, roles: &[String]) -> String {
    let mut yaml = format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  pg:\n    type: postgresql\n    host: {}\n    port: {}\n    database: postgres\n    admin_store: store://local/pg/admin\n    rate_limit: unlimited\nenvs:\n  bench:\n",
        url.host, url.port
    );
    for (i, role) in roles.iter().enumerate() {
        let _ = write!(
            yaml,
            "    ROLE_{i}:\n      from: {{ store: \"store://local/roles/{i}#password\", service: \"svc://pg?kind=db_password\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {role} }} }}\n"
        );
    }
    yaml
}

/// A project directory with the configuration and the store filled in.
fn project(
    url: &ServerUrl,
    roles: &[String],
    initial: &[String],
) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("dsops.yaml");
    std::fs::write(&config, config_yaml(url, roles))?;
    let loaded = load_file(&config).map_err(|d| anyhow!("config: {d:?}"))?;
    let store = open_store(&loaded, "local", &dir.path().join(".dsops"), dir.path())?;
    store.put("pg/admin", "user", &SecretValue::new(url.user.clone()))?;
    store.put("pg/admin", "password", &SecretValue::new(url.password.clone()))?;
    for (i, value) in initial.iter().enumerate() {
        store.put(&format!("roles/{i}"), "password", &SecretValue::new(value.clone()))?;
    }
    Ok((dir, config))
}

fn tune(concurrency: usize) -> impl Fn(&mut AgentConfig) + Send + Sync {
    move |config: &mut AgentConfig| {
        // The target sees `concurrency` calls at most, like the baseline; the agent's own work
        // (store writes, hashing, receipts) overlaps with them.
        config.max_concurrent_jobs =
            std::env::var("DSOPS_BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
        config.max_target_connections = concurrency as u32;
    }
}

/// Waits until every run has ended; fails if one did not complete.
async fn wait_all<F, Fut>(ids: &[String], mut get: F) -> anyhow::Result<()>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<wire::RunSummary>>>,
{
    // Like `dsops rotate`: every 100 ms, ask for the runs that have not ended yet.
    let mut open = ids.to_vec();
    loop {
        let runs = get(open.clone()).await?;
        let ended: Vec<&wire::RunSummary> = runs.iter().filter(|r| r.is_finished()).collect();
        if let Some(bad) = ended.iter().find(|r| r.state_name() != "Completed") {
            anyhow::bail!("run {} ended {}: {}", bad.run_id, bad.state_name(), bad.detail);
        }
        let ended: std::collections::HashSet<&str> =
            ended.iter().map(|r| r.run_id.as_str()).collect();
        open.retain(|id| !ended.contains(id.as_str()));
        if open.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rotate_all() -> wire::RotateRequest {
    wire::RotateRequest {
        request_id: random_id(),
        selector: Some(wire::rotate_request::Selector::AllDueInEnv("bench".into())),
        force: true,
        dry_run: false,
        reason: "benchmark".into(),
        only: Vec::new(),
        break_glass: false,
    }
}

async fn embedded(
    url: &ServerUrl,
    roles: &[String],
    initial: &[String],
    concurrency: usize,
) -> anyhow::Result<Timing> {
    let (dir, config) = project(url, roles, initial)?;
    let loaded = load_file(&config).map_err(|d| anyhow!("config: {d:?}"))?;
    let options = EmbeddedOptions {
        crash: None,
        tune_agent: Some(Arc::new(tune(concurrency))),
        ..Default::default()
    };
    let embedded =
        Embedded::open_with(&dir.path().join(".dsops"), &config, &loaded, options).await?;
    let started = start_timing();
    let response = embedded
        .admin()
        .rotate(embedded.request(rotate_all()))
        .await
        .map_err(|s| anyhow!("{}", s.message()))?;
    let ids: Vec<String> = response.into_inner().runs.into_iter().map(|r| r.run_id).collect();
    anyhow::ensure!(
        ids.len() == roles.len(),
        "started {} runs for {} roles",
        ids.len(),
        roles.len()
    );
    wait_all(&ids, |ids| {
        let request = embedded.request(wire::GetRunsRequest { run_ids: ids, with_steps: false });
        async {
            Ok(embedded
                .admin()
                .get_runs(request)
                .await
                .map_err(|s| anyhow!("{}", s.message()))?
                .into_inner()
                .runs)
        }
    })
    .await?;
    let elapsed = stop_timing(started);
    if std::env::var_os("DSOPS_BENCH_TRACE").is_some() {
        let request = embedded.request(wire::GetRunsRequest {
            run_ids: ids[..ids.len().min(3)].to_vec(),
            with_steps: true,
        });
        for run in embedded
            .admin()
            .get_runs(request)
            .await
            .map_err(|s| anyhow!("{}", s.message()))?
            .into_inner()
            .runs
        {
            let start =
                run.requested_at.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
            let steps: Vec<String> = run
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{}@{}",
                        s.step,
                        s.at.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
                            - start
                    )
                })
                .collect();
            println!("    {}: {}", run.run_id, steps.join(" "));
        }
    }
    embedded.close().await;
    check(dir.path(), &config, roles, initial).await?;
    Ok(elapsed)
}

async fn cluster(
    url: &ServerUrl,
    roles: &[String],
    initial: &[String],
    concurrency: usize,
) -> anyhow::Result<Timing> {
    let (dir, config) = project(url, roles, initial)?;
    let loaded = load_file(&config).map_err(|d| anyhow!("config: {d:?}"))?;
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);
    admin
        .apply_config(wire::ApplyConfigRequest {
            request_id: random_id(),
            config_yaml: std::fs::read_to_string(&config)?,
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await?;
    let mut agent_config =
        dsops_agent::from_config::agent_config(&loaded, &dir.path().join(".dsops"), dir.path())?;
    tune(concurrency)(&mut agent_config);
    let key = dir.path().join(".dsops/agent/bench.key");
    let agent =
        attach_agent(cluster.control(leader), "bench-agent", "default", &key, agent_config, None)
            .await?;
    let started = start_timing();
    let response = admin.rotate(rotate_all()).await?.into_inner();
    let ids: Vec<String> = response.runs.into_iter().map(|r| r.run_id).collect();
    anyhow::ensure!(
        ids.len() == roles.len(),
        "started {} runs for {} roles",
        ids.len(),
        roles.len()
    );
    wait_all(&ids, |ids| {
        let mut admin = admin.clone();
        async move {
            Ok(admin
                .get_runs(wire::GetRunsRequest { run_ids: ids, with_steps: false })
                .await?
                .into_inner()
                .runs)
        }
    })
    .await?;
    let elapsed = stop_timing(started);
    agent.abort();
    cluster.shutdown().await;
    check(dir.path(), &config, roles, initial).await?;
    Ok(elapsed)
}

/// Checks every role logs in with the store's current value (a benchmark that broke things
/// would be measuring the wrong thing).
async fn check(
    dir: &std::path::Path,
    config: &std::path::Path,
    roles: &[String],
    initial: &[String],
) -> anyhow::Result<()> {
    let loaded = load_file(config).map_err(|d| anyhow!("config: {d:?}"))?;
    let store = open_store(&loaded, "local", &dir.join(".dsops"), dir)?;
    let adapter = PostgresAdapter::new(Flavor::Postgres.target());
    for (i, role) in roles.iter().enumerate() {
        let fields = store
            .read(&format!("roles/{i}"), dsops_agent::store::Label::Current)?
            .context("no current value")?;
        let value = fields.get("password").context("no password")?;
        anyhow::ensure!(value.expose() != initial[i], "{role} was not rotated");
        anyhow::ensure!(
            adapter.login(role, value).await? == Login::Accepted,
            "{role} does not log in with its stored value"
        );
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One mode's figures over the trials.
#[derive(Default)]
struct Figures {
    rate: Vec<f64>,
    rate_ratio: Vec<f64>,
    cpu: Vec<f64>,
    cpu_ratio: Vec<f64>,
}

/// CPU time of this process, in ms.
fn process_cpu_ms() -> u64 {
    usage::cpu_ms("self").unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args()?;
    if std::env::var_os("DSOPS_BENCH_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("DSOPS_BENCH_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let url = ServerUrl::parse(&Flavor::Postgres.service().url());
    let prefix = unique_name("rb");
    let roles: Vec<String> = (0..args.roles).map(|i| format!("{prefix}_{i}")).collect();
    let initial: Vec<String> = roles.iter().map(|_| password()).collect();
    let mut statements: Vec<String> = Vec::new();
    for (role, value) in roles.iter().zip(&initial) {
        statements.push(format!("create role \"{role}\" login password '{value}'"));
    }
    Flavor::Postgres.admin(&statements).await;
    println!(
        "rotating {} PostgreSQL roles (immediate, SCRAM-SHA-256), concurrency {}",
        args.roles, args.concurrency
    );

    let reset: Vec<String> = roles
        .iter()
        .zip(&initial)
        .map(|(r, v)| format!("alter role \"{r}\" password '{v}'"))
        .collect();
    // Per mode over the trials: rotations/s, its ratio to the trial's own baseline (run just
    // before, so a machine that is slower for a while slows both sides), this process's CPU per
    // rotation, and that CPU's ratio to the baseline client's.
    let mut figures: BTreeMap<usize, (&str, Figures)> = BTreeMap::new();
    for trial in 1..=args.trials {
        if args.trials > 1 {
            println!("trial {trial} of {}", args.trials);
        }
        let mut base: Option<(f64, f64)> = None;
        for (order, mode) in args.modes.iter().enumerate() {
            // Every mode starts from the passwords the stores hold.
            Flavor::Postgres.admin(&reset).await;
            let (label, timing) = match mode.as_str() {
                "baseline" => ("baseline client", baseline(&url, &roles, args.concurrency).await?),
                "embedded" => {
                    ("dsops embedded", embedded(&url, &roles, &initial, args.concurrency).await?)
                }
                "cluster" => (
                    "dsops 3 nodes + agent",
                    cluster(&url, &roles, &initial, args.concurrency).await?,
                ),
                other => anyhow::bail!("unknown mode {other}"),
            };
            let time = timing.elapsed;
            let rate = args.roles as f64 / time.as_secs_f64();
            let machine = timing.machine_ms as f64 / args.roles as f64;
            let process = timing.process_ms as f64 / args.roles as f64;
            let entry = &mut figures.entry(order).or_insert((label, Figures::default())).1;
            entry.rate.push(rate);
            entry.cpu.push(process);
            let ratios = match base {
                Some((base_rate, base_cpu)) if mode != "baseline" => {
                    entry.rate_ratio.push(rate / base_rate);
                    entry.cpu_ratio.push(process / base_cpu);
                    format!(
                        "  ratio {:.2}, CPU {:.2}x the baseline's",
                        rate / base_rate,
                        process / base_cpu
                    )
                }
                _ => String::new(),
            };
            if mode == "baseline" {
                base = Some((rate, process));
            }
            println!(
                "  {label:<22}: {rate:8.1} rotations/s ({:.2} s)   CPU/rotation: machine {machine:.1} ms, this process {process:.2} ms{ratios}",
                time.as_secs_f64()
            );
        }
    }
    println!("summary ({}; median of {} trial(s)):", args.cores, args.trials);
    for (label, f) in figures.values() {
        let ratios = if f.rate_ratio.is_empty() {
            String::new()
        } else {
            format!(
                "   {:.2}x the baseline's rate, {:.2}x its CPU",
                median(&f.rate_ratio),
                median(&f.cpu_ratio)
            )
        };
        println!(
            "  {label:<22}: {:8.1} rotations/s   CPU/rotation {:.2} ms{ratios}",
            median(&f.rate),
            median(&f.cpu)
        );
    }

    let drops: Vec<String> = roles.iter().map(|r| format!("drop role if exists \"{r}\"")).collect();
    Flavor::Postgres.admin(&drops).await;
    Ok(())
}
