//! `dsops rotate` against a cluster, for a secret whose run is already in flight (a slow apply
//! started by someone else): it waits for that run, reports how it ended, and then rotates the
//! secret as asked — instead of failing with "in flight".

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_tests::agents::{enrolled_agent, start_rotation, token_project};
use dsops_tests::{TestCluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotate_waits_for_the_run_in_flight_then_rotates() {
    let (project, dir) = token_project(1);
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let address = cluster.address(cluster.leader().await).to_owned();
    let agent = enrolled_agent(&project, &cluster, "a", "default").await;

    // A run whose apply takes 4 s, started elsewhere.
    std::fs::write(dir.join("slow"), "").unwrap();
    let first = start_rotation(&cluster, "prod", "API_TOKEN_0").await;
    wait_for("the slow apply", Duration::from_secs(30), || async {
        dir.join("started").exists().then_some(())
    })
    .await;

    let credentials = cluster.data_dir(1).admin();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
            .args(["--server", &address, "--credentials", credentials.to_str().unwrap()])
            .args(["rotate", "--env", "prod", "--key", "API_TOKEN_0", "-o", "json"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{out}{err}");
    assert!(
        err.contains(&format!("run {first} of prod/API_TOKEN_0 was already in flight")),
        "{err}"
    );
    assert!(err.contains(&format!("run {first} of prod/API_TOKEN_0 ended: Completed")), "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["state"], "Completed", "{rows}");
    assert_ne!(row["run_id"], first.as_str(), "a second run, after the first: {rows}");
    assert_eq!(row["generation"], 2, "{rows}");
    agent.stop().await;
    cluster.shutdown().await;
}
