//! `dsops cluster status|token|remove` and `dsops apply` against a real cluster (in-process
//! nodes over mutual TLS), run as a user would: the `dsops` binary with --server and
//! --credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{root, stderr, stdout};
use dsops_tests::TestCluster;

fn dsops(cluster: &TestCluster, server: u64, args: &[&str]) -> std::process::Output {
    dsops_as(cluster, server, &cluster.data_dir(1).admin(), args)
}

fn dsops_as(
    cluster: &TestCluster,
    server: u64,
    credentials: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(args)
        .args(["--server", cluster.address(server), "--credentials", credentials.to_str().unwrap()])
        .current_dir(root())
        .env_remove("DSOPS_CONFIG")
        .output()
        .expect("run dsops")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_commands_work_through_any_node() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();

    // Status through a follower: the CLI follows the redirect to the leader.
    // (The CLI runs as a child process; waiting for it blocks one of the test runtime's two
    // threads, the other serves the cluster.)
    let output = dsops(&cluster, follower, &["cluster", "status", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let status: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(status["leader_id"], leader);
    assert_eq!(status["members"].as_array().unwrap().len(), 3);

    let table = dsops(&cluster, leader, &["cluster", "status"]);
    let text = stdout(&table);
    assert!(text.starts_with(&format!("leader: {leader}")), "{text}");
    assert_eq!(text.lines().filter(|l| l.contains("follower")).count(), 2, "{text}");

    // apply: validates locally, stores, prints the changes; a stale expected version is refused.
    let output = dsops(&cluster, follower, &["apply", "-f", "examples/dsops.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("stored configuration version 1 (was 0)"), "{text}");
    assert!(text.contains("  + envs.prod.ORDERS_DB_PASSWORD"), "{text}");
    let output =
        dsops(&cluster, leader, &["apply", "-f", "examples/dsops.yaml", "--expected-version", "7"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("the stored configuration is version 1, not 7"),
        "{}",
        stderr(&output)
    );
    let output = dsops(&cluster, leader, &["apply", "-f", "examples/invalid/typos.yaml"]);
    assert_eq!(output.status.code(), Some(2), "an invalid configuration is refused before sending");

    // token: one line, a token that parses.
    let output = dsops(&cluster, leader, &["cluster", "token", "--ttl", "10m"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        dsops_identity::JoinToken::parse(stdout(&output).trim()).is_ok(),
        "{}",
        stdout(&output)
    );

    // remove: the node leaves the membership.
    let output = dsops(&cluster, leader, &["cluster", "remove", &follower.to_string()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with(&format!("removed node {follower}; voters now:")),
        "{}",
        stdout(&output)
    );
    let output = dsops(&cluster, leader, &["cluster", "remove", "99"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("node 99 is not a member"), "{}", stderr(&output));
    cluster.shutdown().await;
}

#[test]
fn cluster_commands_need_a_server_and_credentials() {
    let output = common::dsops(&["cluster", "status"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("this command needs a cluster"), "{}", stderr(&output));
    let output = common::dsops(&["cluster", "status", "--server", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--server needs --credentials"), "{}", stderr(&output));
}

/// `dsops operator grant|ungrant|list`: roles as an admin gives them, with a scope; a wrong role
/// name is refused by the CLI (exit 2) before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_roles_are_granted_listed_and_taken_away() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let output = dsops(&cluster, leader, &["operator", "list"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("admin"), "init's bundle is the first admin");

    let output =
        dsops(&cluster, leader, &["operator", "grant", "bob", "operator", "--env", "prod"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "bob now holds: operator in prod");
    let output = dsops(&cluster, leader, &["operator", "list", "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(rows[0]["name"], "admin");
    assert_eq!(rows[0]["roles"][0], "admin");
    assert_eq!(rows[1]["name"], "bob");
    assert_eq!(rows[1]["roles"][0], "operator in prod");

    let output = dsops(&cluster, leader, &["operator", "grant", "bob", "root"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("\"root\" is not a role"), "{}", stderr(&output));
    let output = dsops(&cluster, leader, &["operator", "grant", "bob", "admin", "--env", "prod"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("admin is not limited to an environment"));

    let output =
        dsops(&cluster, leader, &["operator", "ungrant", "bob", "operator", "--env", "prod"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "bob now holds no role");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_invited_enrolled_renewed_and_revoked_from_the_cli() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let output = dsops(
        &cluster,
        leader,
        &["operator", "invite", "vera", "--role", "viewer", "--ttl", "1h", "-o", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let invited: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let token = invited["token"].as_str().unwrap().to_owned();
    let home = tempfile::tempdir().unwrap();
    let bundle = home.path().join("vera");
    let enroll = std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["operator", "enroll", "--server", cluster.address(leader), "--out"])
        .arg(&bundle)
        .env("DSOPS_OPERATOR_TOKEN", &token)
        .env_remove("DSOPS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(enroll.status.code(), Some(0), "{}", stderr(&enroll));
    assert!(stdout(&enroll).contains("enrolled as vera"), "{}", stdout(&enroll));
    for file in ["ca.pem", "operator.pem", "operator.key"] {
        let mode = std::fs::metadata(bundle.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    // The token is spent; enrolling into an existing bundle is refused before any call.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["operator", "enroll", "--server", cluster.address(leader), "--token", &token])
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("already holds a credential bundle"), "{}", stderr(&again));
    let elsewhere = home.path().join("other");
    let spent = std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["operator", "enroll", "--server", cluster.address(leader), "--token", &token])
        .arg("--out")
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert_ne!(spent.status.code(), Some(0));
    assert!(stderr(&spent).contains("already used"), "{}", stderr(&spent));
    assert!(!elsewhere.join("operator.key").exists(), "nothing written");

    // vera reads with her bundle, may not write, renews, and sees herself listed.
    let output = dsops_as(&cluster, leader, &bundle, &["operator", "list", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let vera = rows.as_array().unwrap().iter().find(|r| r["name"] == "vera").unwrap().clone();
    assert_eq!(vera["roles"][0], "viewer");
    assert!(vera["certificate_not_after_unix"].as_i64().unwrap() > 0);
    assert!(vera["last_seen_unix"].as_i64().unwrap() > 0);
    let output = dsops_as(&cluster, leader, &bundle, &["operator", "grant", "vera", "admin"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("operator vera may not manage operators"),
        "{}",
        stderr(&output)
    );
    let before = std::fs::read_to_string(bundle.join("operator.key")).unwrap();
    let output = dsops_as(&cluster, leader, &bundle, &["operator", "renew"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_ne!(std::fs::read_to_string(bundle.join("operator.key")).unwrap(), before, "a new key");
    let output = dsops_as(&cluster, leader, &bundle, &["cluster", "status"]);
    assert_eq!(output.status.code(), Some(0), "the renewed bundle works: {}", stderr(&output));

    // Revoked: refused from then on.
    let output = dsops(&cluster, leader, &["operator", "revoke", "vera", "--reason", "left"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("revoked vera"), "{}", stdout(&output));
    let output = dsops_as(&cluster, leader, &bundle, &["cluster", "status"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("revoked"), "{}", stderr(&output));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_approved_from_the_cli_and_its_history_names_the_approver() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("dsops.yaml");
    std::fs::write(
        &config,
        "version: 1\nsecretStores:\n  local: { type: file }\nrotation:\n  approvals:\n    prod: { required: 1, approvers: [\"role:approver\"], expires: 2h }\nenvs:\n  prod:\n    API_KEY:\n      from: { store: \"store://local/app/api#key\" }\n      rotation: { strategy: random, config: { length: 32 } }\n",
    )
    .unwrap();
    let output = dsops(&cluster, leader, &["apply", "-f", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // anna, an approver of prod, enrols.
    let output = dsops(
        &cluster,
        leader,
        &["operator", "invite", "anna", "--role", "approver", "--env", "prod", "-o", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let token = serde_json::from_str::<serde_json::Value>(&stdout(&output)).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let anna = home.path().join("anna");
    let enroll = std::process::Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["operator", "enroll", "--server", cluster.address(leader), "--token", &token])
        .arg("--out")
        .arg(&anna)
        .output()
        .unwrap();
    assert_eq!(enroll.status.code(), Some(0), "{}", stderr(&enroll));

    // The admin asks; the run waits (exit 0) and says so.
    let output = dsops(
        &cluster,
        leader,
        &["rotate", "--env", "prod", "--key", "API_KEY", "--reason", "CHG-9 quarterly"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("AwaitingApproval"), "{}", stdout(&output));
    assert!(stdout(&output).contains("await approval"), "{}", stdout(&output));
    let output = dsops_as(&cluster, leader, &anna, &["approval", "list", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["requested_by"], "admin");
    assert_eq!(rows[0]["strategy"], "random");
    assert_eq!(rows[0]["store"], "store://local/app/api#key");
    let run = rows[0]["run_id"].as_str().unwrap().to_owned();
    let output = dsops_as(&cluster, leader, &anna, &["approval", "show", &run]);
    assert!(stdout(&output).contains("CHG-9 quarterly"), "{}", stdout(&output));
    assert!(stdout(&output).contains("approvals  0/1"), "{}", stdout(&output));
    // The requester may not approve; a denial without a reason is refused before any call.
    let output = dsops(&cluster, leader, &["approval", "approve", &run]);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("cannot decide"), "{}", stderr(&output));
    let output = dsops_as(&cluster, leader, &anna, &["approval", "deny", &run, "--reason", " "]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let output =
        dsops_as(&cluster, leader, &anna, &["approval", "approve", &run, "--reason", "reviewed"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("1/1 approvals; it starts"), "{}", stdout(&output));

    let output = dsops(
        &cluster,
        leader,
        &["rotation", "history", "--env", "prod", "--key", "API_KEY", "-o", "json"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let history: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let first = &history["runs"][0];
    assert_eq!(first["requested_by"], "admin");
    let decision = &first["approval"]["decisions"][0];
    assert_eq!(decision["operator"], "anna");
    assert_eq!(decision["reason"], "reviewed");
    assert!(!decision["signature_hex"].as_str().unwrap().is_empty());
    assert!(decision["certificate_pem"].as_str().unwrap().contains("BEGIN CERTIFICATE"));
    let output =
        dsops(&cluster, leader, &["rotation", "history", "--env", "prod", "--key", "API_KEY"]);
    assert!(stdout(&output).contains("anna"), "{}", stdout(&output));

    // The audit log says who did what, and its chain verifies.
    let output = dsops(&cluster, leader, &["audit", "list", "--limit", "1000", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let audit: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(audit["verified"], true);
    let events = audit["events"].as_array().unwrap();
    let did = |actor: &str, action: &str| {
        events.iter().any(|e| e["actor"] == actor && e["action"] == action)
    };
    assert!(did("admin", "operator.invited"), "{audit}");
    assert!(did("anna", "operator.enrolled"), "{audit}");
    assert!(did("admin", "run.requested"), "{audit}");
    assert!(did("anna", "approval.approved"), "{audit}");
    let output = dsops_as(&cluster, leader, &anna, &["audit", "list", "--action", "approval."]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("approval.granted"), "{}", stdout(&output));
    assert!(!stdout(&output).contains("operator.invited"), "{}", stdout(&output));

    // Breaking glass needs one secret and a reason; nobody broke glass yet.
    let output =
        dsops(&cluster, leader, &["rotate", "--env", "prod", "--key", "API_KEY", "--break-glass"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--reason"), "{}", stderr(&output));
    let output = dsops(&cluster, leader, &["review", "list"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "no review is open");
    cluster.shutdown().await;
}
