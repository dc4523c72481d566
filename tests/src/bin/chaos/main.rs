//! `dsops-chaos`: a randomized fault run over a 3-node control plane and 3 agents in 2 segments
//! rotating real PostgreSQL, MariaDB and Redis credentials, with a history a checker judges.
//!
//! ```text
//! scripts/chaos.sh --seconds 180            # what CI runs (services started by the script)
//! scripts/chaos.sh --seconds 3600 --seed 7  # the documented long run; a seed replays its faults
//! ```
//!
//! While the run lasts: rotations started by the cluster's scheduler (every minute) and by an
//! operator at random, some in an environment whose runs wait for a signed approval that an
//! approver gives (or, now and then, refuses) after a pause; faults at random, one at a time — a
//! node killed and restarted from its data directory, a node cut off from its peers, delayed
//! links, a node's clock stepped 10 s to 2 min either way (mostly the leader's) and stepped back,
//! an agent SIGKILLed and restarted. Every ~300 ms every database secret is probed: its store's
//! current value (or, mid-run, its pending one) must log in to the real server. Every 2 s the
//! runs every running node knows are recorded (the state keeps only the last 20 per secret).
//! When the faults stop the checker requires: no probe found a lost credential; no run left in
//! flight; no (run, step, attempt) answered twice with different effects; every receipt's
//! signature verifies with its agent's registered key; every gated run that acted carries a
//! valid signed approval by someone other than its requester, and no denied run acted; no agent
//! exited by itself; every node's whole stored audit history verifies from the genesis; the
//! current value of every secret logs in.
//!
//! The agents are real `dsops-agent` processes, killed with SIGKILL. The nodes run in this
//! process, so links can be cut and delayed and a node's clock stepped: the test harness's kill
//! drops a node's tasks and its server without a clean shutdown, its data directory stays. The
//! faults' schedule, not the thread interleaving, is what a seed replays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dsops_agent::adapter::Login;
use dsops_state::{Run, State};
use dsops_tests::TestCluster;
use dsops_tests::agents::AgentProject;
use dsops_tests::cluster::fast_options;
use dsops_tests::databases::{Flavor, TestUser};
use dsops_tests::probe::current_or_pending_works;
use dsops_tests::rotation::{database_service_at, rotate_request};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

mod agents;
mod approver;
mod check;
mod faults;

use agents::Agents;
use approver::{Decisions, GATED_ENV};
use check::{Verdict, judge_approvals, judge_receipts, record};
use faults::{Tally, addresses, inject};

const INITIAL: &str = "Chaos-initial-password-000000000";
pub(crate) const AGENTS: [(&str, &str); 3] = [("a1", "seg-a"), ("a2", "seg-a"), ("b1", "seg-b")];

/// One database secret: where it is stored and how to log in with a stored version.
struct Secret {
    key: &'static str,
    flavor: Flavor,
    store: &'static str,
    entry: String,
    /// One user (immediate, overlap) or two (two-key: the stored `username` says which).
    users: Vec<TestUser>,
}

struct Options {
    seconds: u64,
    seed: u64,
}

fn options() -> Options {
    let mut options = Options { seconds: 180, seed: rand::random::<u32>() as u64 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--seconds" => options.seconds = value().expect("--seconds N"),
            "--seed" => options.seed = value().expect("--seed N"),
            other => panic!("unknown argument {other}; use --seconds N --seed N"),
        }
    }
    options
}

async fn setup() -> (AgentProject, Vec<Secret>, tempfile::TempDir) {
    let shared = tempfile::tempdir().expect("temp dir");
    let root = shared.path().display().to_string();
    // Each service's admin credential under its own entry (`pg/admin`, `redis/admin`, `my/admin`).
    let service = |flavor, name: &str, segment, store| {
        let (yaml, admin) = database_service_at(flavor, name, Some(segment), store);
        (yaml.replace("/db/admin", &format!("/{name}/admin")), admin)
    };
    let (pg, pg_admin) = service(Flavor::Postgres, "pg", "seg-a", "vault-a");
    let (redis, redis_admin) = service(Flavor::Redis, "redis", "seg-a", "vault-a");
    let (my, my_admin) = service(Flavor::MariaDb, "my", "seg-b", "vault-b");
    let mut secrets = Vec::new();
    let (mut envs, mut gated) = (String::new(), String::new());
    let plan: [(&str, &str, Flavor, &str, &str); 6] = [
        ("prod", "PG_IMMEDIATE", Flavor::Postgres, "vault-a", "immediate"),
        ("prod", "PG_TWO_KEY", Flavor::Postgres, "vault-a", "two-key"),
        ("prod", "MY_IMMEDIATE", Flavor::MariaDb, "vault-b", "immediate"),
        ("prod", "MY_TWO_KEY", Flavor::MariaDb, "vault-b", "two-key"),
        ("prod", "REDIS_OVERLAP", Flavor::Redis, "vault-a", "overlap"),
        (GATED_ENV, "PG_GATED", Flavor::Postgres, "vault-a", "immediate"),
    ];
    for (env, key, flavor, store, strategy) in plan {
        let service = match flavor {
            Flavor::Postgres => "pg",
            Flavor::MariaDb => "my",
            Flavor::Redis => "redis",
        };
        let entry = format!("app/{}", key.to_lowercase());
        let (users, config) = if strategy == "two-key" {
            let a = flavor.create_user("chaos_a", INITIAL, true).await;
            let b = flavor.create_user("chaos_b", "Chaos-other-password-0000000000", true).await;
            let config = format!("{{ usernames: [{}, {}] }}", a.name, b.name);
            (vec![a, b], config)
        } else {
            let user = flavor.create_user("chaos", INITIAL, false).await;
            let config = format!("{{ username: {} }}", user.name);
            (vec![user], config)
        };
        let section = if env == GATED_ENV { &mut gated } else { &mut envs };
        section.push_str(&format!(
            "    {key}:\n      from: {{ store: \"store://{store}/{entry}#password\", service: \"svc://{service}?kind={kind}\" }}\n      rotation: {{ strategy: {strategy}, schedule: \"* * * * *\", config: {config} }}\n",
            kind = flavor.kind()
        ));
        secrets.push(Secret { key, flavor, store, entry, users });
    }
    envs.push_str("    SESSION_KEY:\n      from: { store: \"store://vault-a/app/session#key\" }\n      rotation: { strategy: random, schedule: \"* * * * *\" }\n");
    let yaml = format!(
        "version: 1\nsecretStores:\n  vault-a: {{ type: file, segment: seg-a, path: {root}/vault-a, key_file: {root}/vault-a.key }}\n  vault-b: {{ type: file, segment: seg-b, path: {root}/vault-b, key_file: {root}/vault-b.key }}\nservices:\n{pg}{redis}{my}rotation:\n  defaults:\n    grace_period: 1s\n  approvals:\n    {GATED_ENV}: {{ required: 1, approvers: [\"role:approver\"], expires: 1h }}\nenvs:\n  prod:\n{envs}  {GATED_ENV}:\n{gated}"
    );
    let project = AgentProject::new(&yaml);
    for (store, entry, admin) in [
        ("vault-a", "pg/admin", &pg_admin),
        ("vault-a", "redis/admin", &redis_admin),
        ("vault-b", "my/admin", &my_admin),
    ] {
        let agent = if store == "vault-a" { "a1" } else { "b1" };
        project.put(agent, store, entry, "user", &admin.user);
        project.put(agent, store, entry, "password", &admin.password);
    }
    for secret in &secrets {
        let agent = if secret.store == "vault-a" { "a1" } else { "b1" };
        project.put(agent, secret.store, &secret.entry, "password", INITIAL);
        if secret.users.len() == 2 {
            project.put(agent, secret.store, &secret.entry, "username", &secret.users[0].name);
        }
    }
    (project, secrets, shared)
}

/// The store's current value logs in, else its pending one.
async fn some_value_works(project: &AgentProject, secret: &Secret) -> Result<(), String> {
    let agent = if secret.store == "vault-a" { "a1" } else { "b1" };
    let store = project.store(agent, secret.store);
    let result = current_or_pending_works(store.as_ref(), &secret.entry, |_, fields| async move {
        let password = fields.get("password").ok_or("no password")?;
        let user = match fields.get("username") {
            Some(user) if secret.users.len() == 2 => user.expose().to_owned(),
            _ => secret.users[0].name.clone(),
        };
        match secret.flavor.login(&user, password).await {
            Ok(Login::Accepted) => Ok(()),
            _ => Err(format!("refused as {user}")),
        }
    })
    .await;
    result.map_err(|why| format!("{}: {why}", secret.key))
}

/// Starts a forced rotation of `key` at whichever node leads; `false` if none took it.
async fn request_rotation(cluster: &Mutex<TestCluster>, env: &str, key: &str) -> bool {
    let cluster = cluster.lock().await;
    for id in cluster.running() {
        let mut request = rotate_request(env, key);
        request.reason = "chaos".into();
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(5), cluster.admin_client(id).rotate(request))
                .await
        {
            return true;
        }
    }
    false
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    println!(
        "dsops-chaos: seed {} for {} s (replay: --seed {} --seconds {})",
        options.seed, options.seconds, options.seed, options.seconds
    );
    let (project, secrets, _shared) = setup().await;
    let mut node_options = fast_options();
    node_options.scheduler = true;
    let cluster = TestCluster::start_with(3, node_options).await;
    project.apply(&cluster).await;
    let agents = Agents::start(&project, &cluster).await;
    let approver_key = approver::enrol(&cluster).await;
    let cluster = Arc::new(Mutex::new(cluster));
    let agents = Arc::new(Mutex::new(agents));
    let project = Arc::new(project);
    let secrets = Arc::new(secrets);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (probes, requested) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let lost: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let label_changes = Arc::new(AtomicU64::new(0));
    let history: Arc<std::sync::Mutex<BTreeMap<String, Run>>> = Arc::default();

    // Probes: every ~300 ms, every database secret.
    // Store label changes are counted as the probes see them.
    let prober = {
        let (project, secrets, stop, probes, lost, label_changes) = (
            project.clone(),
            secrets.clone(),
            stop.clone(),
            probes.clone(),
            lost.clone(),
            label_changes.clone(),
        );
        tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            while !stop.load(Ordering::SeqCst) {
                for secret in secrets.iter() {
                    probes.fetch_add(1, Ordering::SeqCst);
                    let agent = if secret.store == "vault-a" { "a1" } else { "b1" };
                    if let Ok(labels) =
                        project.store(agent, secret.store).read_labels(&secret.entry)
                        && seen.insert(secret.key, labels.clone()).is_some_and(|old| old != labels)
                    {
                        label_changes.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Err(why) = some_value_works(&project, secret).await {
                        eprintln!("VIOLATION (probe): {why}");
                        lost.lock().expect("lost").push(why);
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    // Operators' rotations, at random.
    let operator = {
        let (cluster, stop, requested, seed) =
            (cluster.clone(), stop.clone(), requested.clone(), options.seed);
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let keys = [
                ("prod", "PG_IMMEDIATE"),
                ("prod", "PG_TWO_KEY"),
                ("prod", "MY_IMMEDIATE"),
                ("prod", "MY_TWO_KEY"),
                ("prod", "REDIS_OVERLAP"),
                ("prod", "SESSION_KEY"),
                (GATED_ENV, "PG_GATED"),
            ];
            while !stop.load(Ordering::SeqCst) {
                let (env, key) = keys[rng.random_range(0..keys.len())];
                if request_rotation(&cluster, env, key).await {
                    requested.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
            }
        })
    };
    // The approver decides what waits, after a pause.
    // It keeps deciding until the runs have settled after the faults: a gated run waiting when
    // the faults stop (or one the scheduler starts meanwhile) must end too.
    let approvals_stop = Arc::new(AtomicBool::new(false));
    let approvals = {
        let (cluster, stop, seed) = (cluster.clone(), approvals_stop.clone(), options.seed);
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0xa99);
            let mut decisions = Decisions::default();
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
                approver::round(&cluster, &approver_key, &mut rng, &mut decisions).await;
            }
            decisions
        })
    };
    // The history: every run any running node knows, every 2 s (the state keeps the last 20
    // runs per secret; an hour's run has many more).
    let recorder = {
        let (cluster, stop, history) = (cluster.clone(), stop.clone(), history.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let guard = cluster.lock().await;
                for id in guard.running() {
                    let runs: Vec<Run> =
                        guard.control(id).read_local(|s| s.runs.values().cloned().collect()).await;
                    record(&mut history.lock().expect("history"), runs.into_iter());
                }
            }
        })
    };
    // Faults until the time is up.
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut rng = StdRng::seed_from_u64(options.seed);
    // Agents whose process ended without being killed (a crash).
    let mut crashed = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        inject(&cluster, &agents, &mut rng, &tally).await;
        crashed.extend(agents.lock().await.exited());
    }
    stop.store(true, Ordering::SeqCst);
    let _ = operator.await;
    let _ = recorder.await;

    // The faults stop: every node and agent runs, links are whole; every run must end.
    let mut verdict = Verdict::default();
    {
        let mut guard = cluster.lock().await;
        guard.heal();
        for id in guard.ids() {
            if !guard.running().contains(&id) {
                guard.restart(id).await;
            }
        }
    }
    let servers = addresses(&cluster).await;
    {
        let mut agents = agents.lock().await;
        crashed.extend(agents.exited());
        for (name, _) in AGENTS {
            if !agents.running(name) {
                agents.spawn(name, &servers);
            }
        }
    }
    let settle = Instant::now();
    let state = loop {
        let guard = cluster.lock().await;
        let leader = guard.leader().await;
        let state = guard.control(leader).read_local(State::clone).await;
        if state.active_runs.is_empty() || settle.elapsed() > Duration::from_secs(240) {
            break state;
        }
        drop(guard);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    approvals_stop.store(true, Ordering::SeqCst);
    let decisions = approvals.await.unwrap_or_default();
    let _ = prober.await;
    crashed.extend(agents.lock().await.exited());
    for (name, status) in crashed {
        verdict.fail(format!("agent {name} exited by itself ({status}); see its log"));
    }
    for why in lost.lock().expect("lost").drain(..) {
        verdict.fail(format!("lost credential: {why}"));
    }
    let mut history = std::mem::take(&mut *history.lock().expect("history"));
    record(&mut history, state.runs.values().cloned());
    for run in history.values().filter(|r| r.finished_at_ms.is_none()) {
        verdict.fail(format!(
            "run {} of {} still {} after the faults stopped",
            run.id,
            run.secret(),
            run.phase.name()
        ));
    }
    let receipts = judge_receipts(&history, &state, &mut verdict);
    let (gated_performed, gated_denied, gated_expired) =
        judge_approvals(&history, GATED_ENV, 1, &mut verdict);
    // Every node's whole stored audit history, from the genesis, and it ends where the node's
    // state does.
    let mut audit_events = 0;
    {
        let guard = cluster.lock().await;
        for id in guard.ids() {
            let control = guard.control(id);
            let head = control.read_local(|s| s.audit.head().seq).await;
            match control.state().audit(0, usize::MAX) {
                Ok(stored) => {
                    if let Err(seq) = stored.verify() {
                        verdict.fail(format!("node {id}: the audit chain breaks at event {seq}"));
                    }
                    if stored.start.seq != 0 {
                        verdict.fail(format!(
                            "node {id}: its audit history starts at {}",
                            stored.start.seq
                        ));
                    }
                    let last = stored.events.last().map_or(0, |e| e.seq);
                    if last != head {
                        verdict.fail(format!(
                            "node {id}: stored audit ends at {last}, state at {head}"
                        ));
                    }
                    audit_events = audit_events.max(stored.events.len());
                }
                Err(e) => verdict.fail(format!("node {id}: its audit history does not read: {e}")),
            }
        }
    }
    for secret in secrets.iter() {
        if let Err(why) = some_value_works(&project, secret).await {
            verdict.fail(format!("at the end: {why}"));
        }
    }
    // The probe can fail: a password changed behind dsops's back is reported as lost.
    let sabotaged = &secrets[0];
    let name = &sabotaged.users[0].name;
    sabotaged
        .flavor
        .admin(&[format!("alter role \"{name}\" password 'Chaos-sabotage-0000000000000000'")])
        .await;
    let caught = some_value_works(&project, sabotaged).await.is_err();
    if !caught {
        verdict.fail("the probe accepted a password changed behind dsops's back".to_owned());
    }
    println!("checker self-test (a password changed behind dsops's back is caught): {caught}");

    let mut phases: BTreeMap<&str, u64> = BTreeMap::new();
    for run in history.values() {
        *phases.entry(run.phase.name()).or_default() += 1;
    }
    println!("faults injected:");
    for (kind, count) in tally.0.lock().expect("tally").iter() {
        println!("  {kind}: {count}");
    }
    println!("rotations requested by the operator: {}", requested.load(Ordering::SeqCst));
    println!("runs by final phase: {phases:?} ({} runs)", history.len());
    println!(
        "approvals: {} approved, {} denied, {} not taken; gated runs performed {gated_performed}, denied {gated_denied}, expired {gated_expired}",
        decisions.approved, decisions.denied, decisions.not_taken
    );
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for run in history.values().filter(|r| !matches!(r.phase.name(), "Completed" | "Denied")) {
        let reason: String = run.last_error.chars().take(160).collect();
        *reasons.entry(format!("{}: {reason}", run.phase.name())).or_default() += 1;
    }
    for (reason, count) in &reasons {
        println!("  {count} × {reason}");
    }
    println!("receipts checked: {receipts}");
    println!("audit events verified per node: {audit_events}");
    println!("store label changes seen: {}", label_changes.load(Ordering::SeqCst));
    println!("probes: {}", probes.load(Ordering::SeqCst));
    println!("violations: {}", verdict.violations.len());

    drop(agents); // kills the agent processes
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.into_inner().shutdown().await;
    }
    for secret in secrets.iter() {
        for user in &secret.users {
            user.drop_user().await;
        }
    }
    if !verdict.violations.is_empty() {
        eprintln!("dsops-chaos: FAILED with seed {}", options.seed);
        std::process::exit(1);
    }
}
