//! `dsops promotion status|halt|resume` through the binary against a real node: a halted line
//! says so (who, why, how to go on) below its table and in JSON; resuming clears it; an
//! unknown line is an error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // This test runs the binary with --server itself.
mod common;

use common::{stderr, stdout};
use dsops_tests::TestCluster;
use dsops_tests::agents::AgentProject;

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
rotation:
  promotion:
    - env: dev
      soak: 1h
    - env: production
envs:
  dev:
    API_KEY: { from: { store: \"store://local/dev/api#key\" }, rotation: { strategy: random } }
  production:
    API_KEY: { from: { store: \"store://local/prod/api#key\" }, rotation: { strategy: random } }
";

fn promotion(cluster: &TestCluster, args: &[&str]) -> std::process::Output {
    let credentials = cluster.data_dir(1).admin();
    std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .arg("promotion")
        .args(args)
        .args(["--server", cluster.address(1), "--credentials", credentials.to_str().unwrap()])
        .env_remove("DSOPS_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run dsops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halted_line_says_who_why_and_how_to_go_on() {
    let project = AgentProject::new(CONFIG);
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;

    let halted = promotion(&cluster, &["halt", "--key", "API_KEY", "--reason", "INC-7: errors"]);
    assert!(halted.status.success(), "{}", stderr(&halted));
    let shown = promotion(&cluster, &["status"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(text.contains("dev/API_KEY"), "{text}");
    assert!(text.contains("production/API_KEY"), "{text}");
    let note = text.lines().last().unwrap();
    assert!(note.starts_with("line API_KEY is HALTED: INC-7: errors (by admin)"), "{text}");
    assert!(note.contains("dsops promotion resume API_KEY"), "{text}");
    let json = promotion(&cluster, &["status", "--key", "API_KEY", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(value["lines"][0]["halted"].as_str().unwrap().contains("INC-7"), "{value}");

    let resumed = promotion(&cluster, &["resume", "API_KEY", "--reason", "fixed"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(!stdout(&promotion(&cluster, &["status"])).contains("HALTED"));

    let unknown = promotion(&cluster, &["halt", "--key", "API_KEI", "--reason", "x"]);
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("API_KEI"), "{}", stderr(&unknown));
    cluster.shutdown().await;
}
