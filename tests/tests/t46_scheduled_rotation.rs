//! The leader's scheduler on a 3-node cluster with a remote agent: a variable with a schedule
//! rotates when its schedule fires, with nobody calling `dsops rotate`; one without a schedule
//! never does; and after the leader is killed, the next leader carries on at the next firing,
//! starting each firing's run once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_state::{RunPhase, SecretRecord};
use dsops_tests::agents::{AgentProject, agent_token, enroll, wait_connected};
use dsops_tests::cluster::fast_options;
use dsops_tests::{TestCluster, wait_for};

const MINUTE_MS: u64 = 60_000;

/// The secret's record and its runs (id, reason, requested at, phase), oldest first.
async fn runs_of(
    cluster: &TestCluster,
    id: &str,
) -> (SecretRecord, Vec<(String, String, u64, RunPhase)>) {
    let leader = cluster.leader().await;
    cluster
        .control(leader)
        .read_local(|s| {
            let record = s.secrets.get(id).cloned().unwrap_or_default();
            let runs = record
                .history
                .iter()
                .chain(record.active_run.iter())
                .filter_map(|run| s.runs.get(run))
                .map(|r| (r.id.clone(), r.reason.clone(), r.requested_at_ms, r.phase))
                .collect();
            (record, runs)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedules_start_runs_and_a_new_leader_carries_on() {
    let project = AgentProject::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  dev:\n    EVERY_MINUTE:\n      from: { store: \"store://local/app/minute#key\" }\n      rotation: { strategy: random, schedule: \"* * * * *\", config: { length: 40 } }\n    BY_HAND:\n      from: { store: \"store://local/app/hand#key\" }\n      rotation: { strategy: random, config: { length: 40 } }\n",
    );
    project.put("a", "local", "app/minute", "key", "initial-minute-value");
    project.put("a", "local", "app/hand", "key", "initial-hand-value");
    let mut cluster = TestCluster::start_with(
        3,
        dsops_control_plane::node::NodeOptions { scheduler: true, ..fast_options() },
    )
    .await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let applied_at =
        cluster.control(leader).read_local(|s| s.current_config().unwrap().applied_at_ms).await;
    let token = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("a"), cluster.address(leader), &token).await.unwrap();
    let addresses: Vec<&str> = cluster.ids().iter().map(|&id| cluster.address(id)).collect();
    let agent = project.start("a", &addresses);
    wait_connected(&agent).await;

    // The first firing after the configuration was stored starts a run, which completes.
    let (record, runs) = wait_for("the first scheduled run", Duration::from_secs(100), || async {
        let (record, runs) = runs_of(&cluster, "dev/EVERY_MINUTE").await;
        (record.last_rotated_at_ms.is_some()).then_some((record, runs))
    })
    .await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let (_, reason, requested_at, phase) = &runs[0];
    assert_eq!(*phase, RunPhase::Completed);
    assert_eq!(reason, "scheduled (* * * * *)");
    let first_firing = (applied_at / MINUTE_MS + 1) * MINUTE_MS;
    assert!(
        *requested_at >= first_firing,
        "started at {requested_at}, before the first firing {first_firing} after the config was stored at {applied_at}"
    );
    assert_ne!(
        project.read("a", "local", "app/minute", "key").as_deref(),
        Some("initial-minute-value")
    );
    let first_rotated = record.last_rotated_at_ms.unwrap();

    // The leader dies; the next leader starts the next firing's run, once.
    cluster.kill(leader).await;
    let runs =
        wait_for("a scheduled run under the next leader", Duration::from_secs(100), || async {
            let (record, runs) = runs_of(&cluster, "dev/EVERY_MINUTE").await;
            (record.last_rotated_at_ms.is_some_and(|t| t > first_rotated)).then_some(runs)
        })
        .await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    // One run per firing: no firing started twice, none started again while its run was in
    // flight.
    let mut firings: Vec<u64> = runs.iter().map(|(_, _, at, _)| at / MINUTE_MS).collect();
    firings.dedup();
    assert_eq!(firings.len(), runs.len(), "two runs for one firing: {runs:?}");
    assert!(
        runs.iter().filter(|r| r.3.is_terminal()).all(|r| r.3 == RunPhase::Completed),
        "{runs:?}"
    );

    // The variable without a schedule was never touched.
    let (hand, hand_runs) = runs_of(&cluster, "dev/BY_HAND").await;
    assert!(hand_runs.is_empty() && hand.last_rotated_at_ms.is_none(), "{hand_runs:?}");
    assert_eq!(
        project.read("a", "local", "app/hand", "key").as_deref(),
        Some("initial-hand-value")
    );

    agent.stop().await;
    cluster.shutdown().await;
}
