//! Upgrading a cluster: the data directories of a 3-node cluster written by release 0.1.0 (log
//! format 1; committed under `tests/golden-cluster/v1/`, with what they hold in
//! `expected.json`) are started by this build one node at a time, as a rolling upgrade does.
//! Each node reopens its raft log and snapshot as the older release left them; once a majority
//! runs it elects a leader; the last node catches up. Every configuration version, every run
//! (phase and generation) and every audit event the old cluster had are still there on every
//! node, the audit chain verifies end to end, and the upgraded cluster takes new writes.
//!
//! The fixture is written by the ignored test below, only when a release changes what is on
//! disk (the fixtures of an earlier release are never rewritten: they stand for clusters in the
//! field):
//!
//! ```text
//! DSOPS_WRITE_GOLDEN=1 cargo test -p dsops-tests --test t77_upgrade_from_golden_cluster -- --ignored
//! ```
//!
//! The nodes listen on the fixed ports the fixture's membership records (29401-29403, below the
//! range the OS hands out for ephemeral ports).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dsops_proto::wire::admin as wire;
use dsops_state::{AuditLog, State};
use dsops_tests::agents::{AgentProject, rotate};
use dsops_tests::{RunView, TestCluster, wait_for};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

const FORMAT: &str = "v1";
const PORTS: [u16; 3] = [29401, 29402, 29403];

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden-cluster").join(FORMAT)
}

fn config(extra: &str) -> String {
    format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nenvs:\n  prod:\n    SESSION_KEY:\n      from: {{ store: \"store://local/app/session#key\" }}\n      rotation: {{ strategy: random, config: {{ length: 32 }} }}\n{extra}"
    )
}

/// What a node's state holds that an upgrade must keep: configuration versions (with a hash of
/// their text), runs (phase, generation, secret) and the audit chain (count and every hash).
fn summary(state: &State) -> Json {
    let configs: Vec<Json> = state
        .configs
        .iter()
        .map(|c| {
            json!({
                "version": c.version,
                "sha256": dsops_proto::hex(&Sha256::digest(c.config_yaml.as_bytes())),
            })
        })
        .collect();
    let runs: Vec<Json> = state
        .runs
        .values()
        .map(|r| {
            json!({ "id": r.id, "secret": r.secret(), "phase": r.phase.name(), "generation": r.generation })
        })
        .collect();
    let events = state.audit.events();
    json!({
        "configs": configs,
        "runs": runs,
        "audit_events": events.len(),
        "audit_hashes": events.iter().map(|e| e.hash.clone()).collect::<Vec<_>>(),
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn state_of(cluster: &TestCluster, id: u64) -> State {
    cluster.control(id).read_local(State::clone).await
}

/// Whether an audit event after the old chain is one the upgraded cluster may write by itself
/// while nothing else happens: a node's summary of refusals (e.g. a TLS handshake a client gave
/// up on while a loaded machine restarted the nodes), or the signed checkpoint that follows a
/// new event. Nothing that changes what the cluster holds (runs, keys, configuration).
fn housekeeping(event: &dsops_state::AuditEvent) -> bool {
    let by_node = event.actor.strip_prefix("node-").is_some_and(|id| id.parse::<u64>().is_ok());
    let summary = event.action.ends_with(".refused")
        || event.action.ends_with("_refused")
        || matches!(event.action.as_str(), "permission.denied" | "refusals.overflow");
    by_node && (summary || event.action == dsops_state::CHECKPOINT_ACTION)
}

/// Whether `state` holds everything `expected` records: the same configuration versions and
/// runs, and the old audit chain unchanged as the start of its own, followed only by
/// [`housekeeping`] events.
fn keeps(state: &State, expected: &Json) -> bool {
    let held = summary(state);
    let old = expected["audit_hashes"].as_array().unwrap();
    let hashes = held["audit_hashes"].as_array().unwrap();
    held["configs"] == expected["configs"]
        && held["runs"] == expected["runs"]
        && hashes.len() >= old.len()
        && hashes[..old.len()] == old[..]
        && state.audit.events().iter().skip(old.len()).all(housekeeping)
}

/// Waits (20 s at most) until node `id` holds what `expected` records (see [`keeps`]), and
/// returns its state; on time-out, fails showing what it holds.
async fn holds(cluster: &TestCluster, id: u64, expected: &Json) -> State {
    let started = std::time::Instant::now();
    loop {
        let state = state_of(cluster, id).await;
        if keeps(&state, expected) {
            return state;
        }
        if started.elapsed() >= Duration::from_secs(20) {
            let events = state.audit.events();
            let later: Vec<String> = events
                .iter()
                .skip(expected["audit_events"].as_u64().unwrap() as usize)
                .map(|e| format!("{} {} {} {}", e.actor, e.action, e.subject, e.detail))
                .collect();
            panic!(
                "node {id} holds\n{:#}\nnot\n{expected:#}\nevents after the old chain: {later:#?}",
                summary(&state)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_the_previous_release_upgrades_one_node_at_a_time() {
    let expected: Json =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    for node in ["node-1", "node-2", "node-3"] {
        copy_dir(&fixture().join(node), &root.path().join(node));
    }
    let mut cluster = TestCluster::from_dirs(root);
    assert_eq!(cluster.ids(), vec![1, 2, 3]);

    // One node at a time; the first two make a majority and elect a leader.
    cluster.restart(1).await;
    cluster.restart(2).await;
    let leader = cluster.leader_among(&[1, 2]).await;
    holds(&cluster, leader, &expected).await;
    cluster.restart(3).await;
    for id in [1, 2, 3] {
        let node = holds(&cluster, id, &expected).await;
        AuditLog::verify(&node.audit.events())
            .unwrap_or_else(|seq| panic!("node {id}: the audit chain breaks at event {seq}"));
    }

    // The upgraded cluster takes new writes.
    let versions = expected["configs"].as_array().unwrap().len() as u64;
    let leader = cluster.leader().await;
    let applied = cluster
        .admin_client(leader)
        .apply_config(wire::ApplyConfigRequest {
            request_id: "upgrade-apply-00000001".into(),
            config_yaml: config(
                "    UPGRADED:\n      from: { store: \"store://local/app/up#key\" }\n",
            ),
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: versions,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.version, versions + 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the fixture; run with DSOPS_WRITE_GOLDEN=1 when a release changes what is on disk"]
async fn write_golden_cluster() {
    assert!(std::env::var_os("DSOPS_WRITE_GOLDEN").is_some(), "set DSOPS_WRITE_GOLDEN=1");
    let addresses: Vec<String> = PORTS.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let cluster = TestCluster::start_at(&addresses).await;
    // The agent knows both versions' stores; the cluster gets the first version, then the second.
    let second = config(
        "    API_KEY:\n      from: { store: \"store://local/app/api#key\" }\n      rotation: { strategy: random }\n",
    );
    let project = AgentProject::new(&second);
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .apply_config(wire::ApplyConfigRequest {
            request_id: "golden-apply-00000001".into(),
            config_yaml: config(""),
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let agents = project.start_agents(&cluster, &[("a", "default")]).await;
    for _ in 0..2 {
        assert_eq!(rotate(&cluster, "prod", "SESSION_KEY").await.state_name(), "Completed");
    }
    // A second configuration version, and a run of the secret it adds.
    project.apply(&cluster).await;
    let run = rotate(&cluster, "prod", "API_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    for agent in agents {
        agent.stop().await;
    }
    // Every node has applied everything before the snapshot of what they hold is taken.
    let leader = cluster.leader().await;
    let expected = summary(&state_of(&cluster, leader).await);
    for id in cluster.ids() {
        wait_for(&format!("node {id} to catch up"), Duration::from_secs(20), || async {
            (summary(&state_of(&cluster, id).await) == expected).then_some(())
        })
        .await;
    }
    let kept = cluster.shutdown_keeping_dirs().await;
    let written = kept.path();
    let out = fixture();
    let _ = std::fs::remove_dir_all(&out);
    for node in ["node-1", "node-2", "node-3"] {
        copy_dir(&written.join(node), &out.join(node));
    }
    std::fs::write(out.join("expected.json"), serde_json::to_vec_pretty(&expected).unwrap())
        .unwrap();
}
