//! `dsops plan --check` through the binary against a real cluster with a remote agent and the
//! real PostgreSQL: the agent's preflight shows per secret, and `--check` makes a failing one
//! the exit status — an admin credential without the privilege to change passwords fails it, a
//! privileged one passes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // This test runs the binary with --server itself.
mod common;

use common::{stderr, stdout};
use dsops_tests::TestCluster;
use dsops_tests::agents::{AgentProject, agent_token, enroll, wait_connected};
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::database_service_at;

fn plan(cluster: &TestCluster, project: &AgentProject, args: &[&str]) -> std::process::Output {
    let credentials = cluster.data_dir(1).admin();
    std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .arg("plan")
        .args(args)
        .args(["-f", project.project.config.to_str().unwrap()])
        .args(["--server", cluster.address(1), "--credentials", credentials.to_str().unwrap()])
        .current_dir(project.project.dir.path())
        .env_remove("DSOPS_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run dsops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_check_fails_on_a_missing_privilege_and_passes_without_one() {
    let weak = Flavor::Postgres.create_user("plweak", "weak-admin-pw", false).await;
    let app = Flavor::Postgres.create_user("plapp", "x", true).await;
    let (pg, pg_admin) = database_service_at(Flavor::Postgres, "pg", None, "local");
    let (weak_pg, _) = database_service_at(Flavor::Postgres, "weakpg", None, "local");
    let weak_pg = weak_pg.replace("store://local/db/admin", "store://local/weak/admin");
    let project = AgentProject::new(&format!(
        "version: 1
secretStores:
  local: {{ type: file }}
services:
{pg}{weak_pg}envs:
  dev:
    GOOD: {{ from: {{ store: \"store://local/app/good#password\", service: \"svc://pg?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: {app} }} }} }}
  prod:
    WEAK: {{ from: {{ store: \"store://local/app/weak#password\", service: \"svc://weakpg?kind=db_password\" }}, rotation: {{ strategy: immediate, config: {{ username: {app} }} }} }}
",
        app = app.name
    ));
    project.put("a", "local", "db/admin", "user", &pg_admin.user);
    project.put("a", "local", "db/admin", "password", &pg_admin.password);
    project.put("a", "local", "weak/admin", "user", &weak.name);
    project.put("a", "local", "weak/admin", "password", "weak-admin-pw");
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let token = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("a"), cluster.address(1), &token).await.unwrap();
    let agent = project.start("a", &[cluster.address(1)]);
    wait_connected(&agent).await;

    // (Each child process blocks one of the runtime's two threads; the other serves the node
    // and the agent.)
    let failing = plan(&cluster, &project, &["--env", "prod", "--check"]);
    assert_eq!(failing.status.code(), Some(1), "{}{}", stdout(&failing), stderr(&failing));
    assert!(
        stderr(&failing).contains("the preflight of 1 secret(s) of prod failed"),
        "{}",
        stderr(&failing)
    );
    let table = stdout(&failing);
    let row = table.lines().find(|l| l.contains("WEAK")).expect("a row for WEAK");
    assert!(row.contains("privilege"), "{table}");
    // Without --check the same plan is shown and the exit status is 0.
    let shown = plan(&cluster, &project, &["--env", "prod"]);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    assert!(stdout(&shown).contains("privilege"), "{}", stdout(&shown));
    // The privileged admin passes, in JSON too.
    let passing = plan(&cluster, &project, &["--env", "dev", "--check", "-o", "json"]);
    assert_eq!(passing.status.code(), Some(0), "{}{}", stdout(&passing), stderr(&passing));
    let rows: serde_json::Value = serde_json::from_slice(&passing.stdout).unwrap();
    let checks = rows[0]["preflight"].as_array().expect("preflight findings");
    assert!(!checks.is_empty(), "{rows}");
    assert!(checks.iter().all(|c| c["ok"] == true), "{rows}");
    // The catalog's PostgreSQL format (letters, digits, `-`, `_`) is safe in a URL.
    let format = checks.iter().find(|c| c["name"] == "format").expect("a format check");
    assert!(format["detail"].as_str().unwrap().contains("need no escaping"), "{rows}");
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in ["credential", "reach", "privilege"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    drop(agent);
    cluster.shutdown().await;
    for user in [weak, app] {
        user.drop_user().await;
    }
}
