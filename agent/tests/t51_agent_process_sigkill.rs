//! The real `dsops-agent` binary: enrolled with `dsops-agent enroll`, running its session with
//! `dsops-agent run`, SIGKILLed in the middle of a step. Another agent of the segment takes the
//! step over and the run completes; the killed attempt is on record as given up because its
//! agent lost its session.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::process::{Command, Stdio};
use std::time::Duration;

use dsops_tests::agents::{
    agent_token, enroll, start_rotation, token_project, wait_connected, wait_run,
};
use dsops_tests::{TestCluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_agent_process_is_replaced_mid_run() {
    let (project, dir) = token_project(1);
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let address = cluster.address(leader).to_owned();

    // Agent a: the real binary, enrolled and run as an operator would.
    let token = agent_token(&cluster, "default", 600).await;
    let a_dir = project.data_dir("a");
    let enrolled = Command::new(env!("CARGO_BIN_EXE_dsops-agent"))
        .args(["enroll", "--server", &address, "--data-dir"])
        .arg(&a_dir)
        .env("DSOPS_AGENT_TOKEN", &token)
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let a_id =
        String::from_utf8_lossy(&enrolled.stdout).split_whitespace().nth(2).unwrap().to_owned();
    assert!(a_id.starts_with("agt-"), "{a_id}");
    let mut a = Command::new(env!("CARGO_BIN_EXE_dsops-agent"))
        .args(["run", "--data-dir"])
        .arg(&a_dir)
        .arg("--config")
        .arg(&project.project.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listed = wait_for("agent a's session", Duration::from_secs(20), || async {
        dsops_tests::agents::list_agents(&cluster)
            .await
            .into_iter()
            .find(|x| x.agent_id == a_id && x.connected)
    })
    .await;
    assert_eq!(listed.services, ["tokens"]);

    std::fs::write(dir.join("slow"), "").unwrap();
    let run_id = start_rotation(&cluster, "prod", "API_TOKEN_0").await;
    wait_for("agent a to start the slow apply", Duration::from_secs(30), || async {
        dir.join("started").exists().then_some(())
    })
    .await;
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();

    // Agent b, of the same segment, arrives and takes over.
    let b_token = agent_token(&cluster, "default", 600).await;
    let b = enroll(&project.data_dir("b"), &address, &b_token).await.unwrap();
    let agent_b = project.start("b", &[&address]);
    wait_connected(&agent_b).await;
    let run = wait_run(&cluster, &run_id, Duration::from_secs(60)).await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let lost = run.steps.iter().find(|s| s.outcome_name() == "timed_out").expect("a given-up step");
    assert_eq!((lost.step_name(), lost.agent_id.as_str()), ("apply", a_id.as_str()));
    assert!(lost.detail.contains("lost its session"), "{lost:?}");
    let after: Vec<_> =
        run.steps.iter().skip_while(|s| s.outcome_name() != "timed_out").skip(1).collect();
    assert!(!after.is_empty() && after.iter().all(|s| s.agent_id == b.agent_id), "{run:?}");
    let current = project.read("b", "shared", "app/token0", "value").unwrap();
    // (The killed agent's program, orphaned, may still finish its apply: it adds the same new
    // token, so the new one is valid whatever the order.)
    let valid = std::fs::read_to_string(dir.join("valid-tokens")).unwrap();
    assert!(valid.split_whitespace().any(|t| t == current), "{valid}");
    agent_b.stop().await;
    cluster.shutdown().await;
}
