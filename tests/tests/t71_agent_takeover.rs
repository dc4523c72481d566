//! An agent cut off mid-step: another agent of the segment takes the step over, the run
//! completes, and when the first agent comes back its late receipt is refused and audited.
//! And runs survive the leader's death while agents are connected: agents follow the new
//! leader, every run completes, and no step is performed twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::collections::BTreeMap;
use std::time::Duration;

use dsops_proto::wire::admin as wire;
use dsops_tests::agents::{
    agent_token, enroll, start_rotation, token_project, wait_audit, wait_connected, wait_run,
};
use dsops_tests::proxy::Proxy;
use dsops_tests::{TestCluster, wait_for};

async fn start_run(cluster: &TestCluster, key: &str) -> String {
    start_rotation(cluster, "prod", key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_agent_is_replaced_and_its_late_receipt_refused() {
    let (project, dir) = token_project(1);
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let proxy = Proxy::start(cluster.address(leader)).await;
    let a = enroll(
        &project.data_dir("a"),
        proxy.address(),
        &agent_token(&cluster, "default", 600).await,
    )
    .await
    .unwrap();
    let b = enroll(
        &project.data_dir("b"),
        cluster.address(leader),
        &agent_token(&cluster, "default", 600).await,
    )
    .await
    .unwrap();
    let agent_a = project.start("a", &[proxy.address()]);
    wait_connected(&agent_a).await;

    std::fs::write(dir.join("slow"), "").unwrap();
    let run_id = start_run(&cluster, "API_TOKEN_0").await;
    wait_for("agent a to start the slow apply", Duration::from_secs(30), || async {
        dir.join("started").exists().then_some(())
    })
    .await;
    // Agent a is cut off while its apply runs; agent b arrives.
    proxy.cut();
    let agent_b = project.start("b", &[cluster.address(leader)]);
    wait_connected(&agent_b).await;

    let run = wait_run(&cluster, &run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let lost = run.steps.iter().find(|s| s.outcome_name() == "timed_out").expect("a given-up step");
    assert_eq!((lost.step_name(), lost.agent_id.as_str()), ("apply", a.agent_id.as_str()));
    assert!(lost.detail.contains("lost its session"), "{lost:?}");
    let after: Vec<&wire::RunStep> =
        run.steps.iter().skip_while(|s| s.outcome_name() != "timed_out").skip(1).collect();
    assert!(!after.is_empty() && after.iter().all(|s| s.agent_id == b.agent_id), "{run:?}");

    // Agent a comes back with its receipt for the old attempt: refused and audited.
    proxy.restore();
    let refusal = wait_audit(
        cluster.control(leader),
        "receipt.refused",
        &a.agent_id,
        Duration::from_secs(30),
    )
    .await;
    assert!(refusal.contains("late or unexpected apply attempt 1"), "{refusal}");
    let after_late = wait_run(&cluster, &run_id, Duration::from_secs(5)).await;
    assert_eq!(after_late.steps.len(), run.steps.len(), "the late receipt changed nothing");

    agent_a.stop().await;
    agent_b.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_the_leaders_death_without_a_step_run_twice() {
    const SECRETS: usize = 6;
    let (project, dir) = token_project(SECRETS);
    let mut cluster = TestCluster::start(3).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let servers: Vec<String> =
        cluster.ids().iter().map(|&id| cluster.address(id).to_owned()).collect();
    let servers: Vec<&str> = servers.iter().map(String::as_str).collect();
    for name in ["a", "b"] {
        let token = agent_token(&cluster, "default", 600).await;
        enroll(&project.data_dir(name), cluster.address(leader), &token).await.unwrap();
    }
    let agent_a = project.start("a", &servers);
    let agent_b = project.start("b", &servers);
    wait_connected(&agent_a).await;
    wait_connected(&agent_b).await;

    let mut runs = Vec::new();
    for n in 0..SECRETS {
        runs.push(start_run(&cluster, &format!("API_TOKEN_{n}")).await);
    }
    // Kill the leader once some work is done.
    wait_for("the first steps", Duration::from_secs(30), || async {
        let calls = std::fs::read_to_string(dir.join("calls")).unwrap_or_default();
        (calls.lines().count() >= 2).then_some(())
    })
    .await;
    cluster.kill(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);

    for run_id in &runs {
        let run = wait_run(&cluster, run_id, Duration::from_secs(90)).await;
        assert_eq!(run.state_name(), "Completed", "{run:?}");
        // One accepted receipt per step and attempt.
        let mut seen = BTreeMap::new();
        for step in &run.steps {
            *seen.entry((step.step_name(), step.attempt)).or_insert(0) += 1;
        }
        assert!(seen.values().all(|&n| n == 1), "{run:?}");
    }
    // The program was called once per run, step, checked step and attempt.
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for line in calls.lines() {
        *counted.entry(line).or_insert(0) += 1;
    }
    let twice: Vec<_> = counted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "steps performed more than once: {twice:?}");
    let agents_after: std::collections::BTreeSet<String> =
        dsops_tests::agents::list_agents(&cluster)
            .await
            .into_iter()
            .filter(|a| a.connected)
            .map(|a| a.agent_id)
            .collect();
    assert_eq!(agents_after.len(), 2, "both agents reconnected to the new leader");

    agent_a.stop().await;
    agent_b.stop().await;
    cluster.shutdown().await;
}
