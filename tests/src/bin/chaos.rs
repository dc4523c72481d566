//! `dsops-chaos`: a randomized fault run over a 3-node control plane and 3 agents in 2 segments
//! rotating real PostgreSQL, MariaDB and Redis credentials, with a history a checker judges.
//!
//! ```text
//! scripts/chaos.sh --seconds 180            # what CI runs (services started by the script)
//! scripts/chaos.sh --seconds 3600 --seed 7  # the documented long run; a seed replays its faults
//! ```
//!
//! While the run lasts: rotations started by the cluster's scheduler (every minute) and by an
//! operator at random; faults at random — a node killed and restarted from its data directory, a
//! node cut off from its peers, delayed links, an agent killed and restarted. Every ~300 ms every
//! database secret is probed: its store's current value (or, mid-run, its pending one) must log
//! in to the real server. When the faults stop the checker requires: no probe found a lost
//! credential; no run left in flight; no (run, step, attempt) answered twice with different
//! effects; every receipt's signature verifies with its agent's registered key; every node's
//! audit chain verifies; the current value of every secret logs in.
//!
//! The nodes and agents run in this process (the test harness's kill drops a node's tasks and
//! its server without a clean shutdown; its data directory stays), and the faults' schedule, not
//! the thread interleaving, is what a seed replays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dsops_agent::adapter::Login;
use dsops_agent::host::RunningAgent;
use dsops_agent::store::Label;
use dsops_control_plane::raft::LinkAction;
use dsops_state::{AuditLog, State};
use dsops_tests::TestCluster;
use dsops_tests::agents::AgentProject;
use dsops_tests::cluster::fast_options;
use dsops_tests::databases::{Flavor, TestUser};
use dsops_tests::rotation::{database_service_at, rotate_request};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

const INITIAL: &str = "Chaos-initial-password-000000000";
const AGENTS: [(&str, &str); 3] = [("a1", "seg-a"), ("a2", "seg-a"), ("b1", "seg-b")];

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

/// Faults injected, by kind.
#[derive(Default)]
struct Tally(std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl Tally {
    fn add(&self, kind: &'static str) {
        *self.0.lock().expect("tally").entry(kind).or_default() += 1;
    }
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
    let mut envs = String::new();
    let plan: [(&str, Flavor, &str, &str); 5] = [
        ("PG_IMMEDIATE", Flavor::Postgres, "vault-a", "immediate"),
        ("PG_TWO_KEY", Flavor::Postgres, "vault-a", "two-key"),
        ("MY_IMMEDIATE", Flavor::MariaDb, "vault-b", "immediate"),
        ("MY_TWO_KEY", Flavor::MariaDb, "vault-b", "two-key"),
        ("REDIS_OVERLAP", Flavor::Redis, "vault-a", "overlap"),
    ];
    for (key, flavor, store, strategy) in plan {
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
        envs.push_str(&format!(
            "    {key}:\n      from: {{ store: \"store://{store}/{entry}#password\", service: \"svc://{service}?kind={kind}\" }}\n      rotation: {{ strategy: {strategy}, schedule: \"* * * * *\", config: {config} }}\n",
            kind = flavor.kind()
        ));
        secrets.push(Secret { key, flavor, store, entry, users });
    }
    envs.push_str("    SESSION_KEY:\n      from: { store: \"store://vault-a/app/session#key\" }\n      rotation: { strategy: random, schedule: \"* * * * *\" }\n");
    let yaml = format!(
        "version: 1\nsecretStores:\n  vault-a: {{ type: file, segment: seg-a, path: {root}/vault-a, key_file: {root}/vault-a.key }}\n  vault-b: {{ type: file, segment: seg-b, path: {root}/vault-b, key_file: {root}/vault-b.key }}\nservices:\n{pg}{redis}{my}rotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  prod:\n{envs}"
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

/// The store's current value logs in, else its pending one (from one snapshot of the entry);
/// a failure counts only if the entry did not change meanwhile.
async fn some_value_works(project: &AgentProject, secret: &Secret) -> Result<(), String> {
    let agent = if secret.store == "vault-a" { "a1" } else { "b1" };
    let store = project.store(agent, secret.store);
    let mut last = String::new();
    for _ in 0..5 {
        let snapshot = store.read_labels(&secret.entry).map_err(|e| e.to_string())?;
        let mut tried = Vec::new();
        for label in [Label::Current, Label::Pending] {
            let Some((_, fields)) = snapshot.get(&label) else { continue };
            let Some(password) = fields.get("password") else { continue };
            let user = match fields.get("username") {
                Some(user) if secret.users.len() == 2 => user.expose().to_owned(),
                _ => secret.users[0].name.clone(),
            };
            if secret.flavor.login(&user, password).await.unwrap_or(Login::Refused)
                == Login::Accepted
            {
                return Ok(());
            }
            tried.push(format!("{label} as {user}"));
        }
        last = format!("{}: no stored value logs in (tried {tried:?})", secret.key);
        if store.read_labels(&secret.entry).map_err(|e| e.to_string())? == snapshot {
            return Err(last);
        }
    }
    Err(last)
}

/// Starts a forced rotation of `key` at whichever node leads; `false` if none took it.
async fn request_rotation(cluster: &Mutex<TestCluster>, key: &str) -> bool {
    let cluster = cluster.lock().await;
    for id in cluster.running() {
        let mut request = rotate_request("prod", key);
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

/// The addresses of every node (agents know them all and follow the leader).
async fn addresses(cluster: &Mutex<TestCluster>) -> Vec<String> {
    let cluster = cluster.lock().await;
    cluster.ids().iter().map(|&id| cluster.address(id).to_owned()).collect()
}

/// One fault, then the repair after a pause; the kinds are counted in `tally`.
async fn inject(
    cluster: &Mutex<TestCluster>,
    agents: &Mutex<BTreeMap<&'static str, Option<RunningAgent>>>,
    project: &AgentProject,
    rng: &mut StdRng,
    tally: &Tally,
) {
    let pause = Duration::from_millis(rng.random_range(1_000..4_000));
    let ids = cluster.lock().await.ids();
    let victim = ids[rng.random_range(0..ids.len())];
    match rng.random_range(0..4) {
        0 => {
            {
                let mut cluster = cluster.lock().await;
                if cluster.running().len() < ids.len() {
                    return;
                }
                cluster.kill(victim).await;
            }
            tally.add("node killed, restarted from disk");
            tokio::time::sleep(pause).await;
            cluster.lock().await.restart(victim).await;
        }
        1 => {
            let others: Vec<u64> = ids.iter().copied().filter(|id| *id != victim).collect();
            cluster.lock().await.partition(&[victim], &others);
            tally.add("node cut off from its peers");
            tokio::time::sleep(pause).await;
            cluster.lock().await.heal();
        }
        2 => {
            let delay = Duration::from_millis(rng.random_range(20..250));
            {
                let cluster = cluster.lock().await;
                for from in &ids {
                    for to in &ids {
                        if from != to && rng.random_bool(0.5) {
                            cluster.set_link(*from, *to, LinkAction::Delay(delay));
                        }
                    }
                }
            }
            tally.add("links delayed");
            tokio::time::sleep(pause).await;
            cluster.lock().await.heal();
        }
        _ => {
            let (name, _) = AGENTS[rng.random_range(0..AGENTS.len())];
            let Some(agent) = agents.lock().await.get_mut(name).and_then(Option::take) else {
                return;
            };
            agent.kill();
            tally.add("agent killed and restarted");
            tokio::time::sleep(pause).await;
            let servers = addresses(cluster).await;
            let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
            agents.lock().await.insert(name, Some(project.start(name, &servers)));
        }
    }
}

/// What the checker found.
#[derive(Default)]
struct Verdict {
    violations: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, why: String) {
        eprintln!("VIOLATION: {why}");
        self.violations.push(why);
    }
}

/// A receipt's step: (step, the step it checks, attempt).
type StepKey = (String, Option<String>, u32);
/// What a receipt says happened: (outcome, value fingerprint).
type Effect = (String, Option<String>);

/// Receipts: one effect per (run, generation, step, attempt), every signature valid.
fn judge_receipts(state: &State, verdict: &mut Verdict) -> usize {
    let mut checked = 0;
    for run in state.runs.values() {
        let mut seen: BTreeMap<StepKey, Effect> = BTreeMap::new();
        for receipt in &run.receipts {
            if receipt.body_hex.is_empty() {
                continue; // a time-out the control plane recorded, not a receipt
            }
            checked += 1;
            let key = (
                receipt.step.to_string(),
                receipt.checked_step.map(|s| s.to_string()),
                receipt.attempt,
            );
            let effect = (receipt.outcome.name().to_owned(), receipt.fingerprint.clone());
            if let Some(earlier) = seen.insert(key.clone(), effect.clone())
                && earlier != effect
            {
                verdict.fail(format!(
                    "run {} (generation {}): {key:?} answered twice: {earlier:?} then {effect:?}",
                    run.id, run.generation
                ));
            }
            let agent = state.agents.get(&receipt.agent_id);
            let valid = agent.is_some_and(|agent| {
                let key = dsops_proto::hex_decode(&agent.public_key)
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                let body = dsops_proto::hex_decode(&receipt.body_hex);
                let signature = dsops_proto::hex_decode(&receipt.signature_hex)
                    .and_then(|s| <[u8; 64]>::try_from(s).ok());
                match (key, body, signature) {
                    (Some(key), Some(body), Some(signature)) => {
                        let signed = dsops_proto::domain::SignedReceipt {
                            body: match prost::Message::decode(body.as_slice()).ok().and_then(
                                |w: dsops_proto::wire::common::ReceiptBody| w.try_into().ok(),
                            ) {
                                Some(body) => body,
                                None => return false,
                            },
                            body_bytes: body,
                            signature,
                        };
                        signed.verify(&key).is_ok()
                    }
                    _ => false,
                }
            });
            if !valid {
                verdict.fail(format!(
                    "run {}: the receipt of {} attempt {} by {} does not verify",
                    run.id, receipt.step, receipt.attempt, receipt.agent_id
                ));
            }
        }
    }
    checked
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
    let started_agents = project.start_agents(&cluster, &AGENTS).await;
    let cluster = Arc::new(Mutex::new(cluster));
    let agents: Arc<Mutex<BTreeMap<&'static str, Option<RunningAgent>>>> = Arc::new(Mutex::new(
        AGENTS.iter().map(|(name, _)| *name).zip(started_agents.into_iter().map(Some)).collect(),
    ));
    let project = Arc::new(project);
    let secrets = Arc::new(secrets);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (probes, requested) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let lost: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();

    // Probes: every ~300 ms, every database secret.
    let prober = {
        let (project, secrets, stop, probes, lost) =
            (project.clone(), secrets.clone(), stop.clone(), probes.clone(), lost.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for secret in secrets.iter() {
                    probes.fetch_add(1, Ordering::SeqCst);
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
                "PG_IMMEDIATE",
                "PG_TWO_KEY",
                "MY_IMMEDIATE",
                "MY_TWO_KEY",
                "REDIS_OVERLAP",
                "SESSION_KEY",
            ];
            while !stop.load(Ordering::SeqCst) {
                let key = keys[rng.random_range(0..keys.len())];
                if request_rotation(&cluster, key).await {
                    requested.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
            }
        })
    };
    // Faults until the time is up.
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let mut rng = StdRng::seed_from_u64(options.seed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
        inject(&cluster, &agents, &project, &mut rng, &tally).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = operator.await;

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
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    for (name, agent) in agents.lock().await.iter_mut() {
        if agent.is_none() {
            *agent = Some(project.start(name, &servers));
        }
    }
    let settle = Instant::now();
    let state = loop {
        let guard = cluster.lock().await;
        let leader = guard.leader().await;
        let state = guard.control(leader).read_local(State::clone).await;
        if state.active_runs.is_empty() || settle.elapsed() > Duration::from_secs(120) {
            break state;
        }
        drop(guard);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = prober.await;
    for why in lost.lock().expect("lost").drain(..) {
        verdict.fail(format!("lost credential: {why}"));
    }
    for run in state.runs.values().filter(|r| r.finished_at_ms.is_none()) {
        verdict.fail(format!(
            "run {} of {} still {} after the faults stopped",
            run.id,
            run.secret(),
            run.phase.name()
        ));
    }
    let receipts = judge_receipts(&state, &mut verdict);
    {
        let guard = cluster.lock().await;
        for id in guard.ids() {
            let events = guard.control(id).read_local(|s| s.audit.events()).await;
            if let Err(seq) = AuditLog::verify(&events) {
                verdict.fail(format!("node {id}: the audit chain breaks at event {seq}"));
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
    for run in state.runs.values() {
        *phases.entry(run.phase.name()).or_default() += 1;
    }
    println!("faults injected:");
    for (kind, count) in tally.0.lock().expect("tally").iter() {
        println!("  {kind}: {count}");
    }
    println!("rotations requested by the operator: {}", requested.load(Ordering::SeqCst));
    println!("runs by final phase: {phases:?}");
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for run in state.runs.values().filter(|r| r.phase.name() != "Completed") {
        let reason: String = run.last_error.chars().take(160).collect();
        *reasons.entry(format!("{}: {reason}", run.phase.name())).or_default() += 1;
    }
    for (reason, count) in &reasons {
        println!("  {count} × {reason}");
    }
    println!("receipts checked: {receipts}");
    println!("probes: {}", probes.load(Ordering::SeqCst));
    println!("violations: {}", verdict.violations.len());

    for (_, agent) in agents.lock().await.iter_mut() {
        if let Some(agent) = agent.take() {
            agent.stop().await;
        }
    }
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
