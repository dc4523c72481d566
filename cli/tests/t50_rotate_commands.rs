//! The rotation commands of the real `dsops` binary on the embedded default: `store put` reads
//! standard input only, `rotate` (one and `--all`), `rotation status|history|rollback`, `get`
//! and `exec`; and the plan refuses `overlap` for a database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Each test binary uses part of the shared helpers.
mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{dsops_in, stderr, stdout};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
envs:
  dev:
    JWT_SIGNING_KEY:
      from: { store: \"store://local/app/jwt#key\" }
      rotation: { strategy: random, schedule: \"0 3 * * 0\", config: { length: 64 } }
    SESSION_SECRET:
      from: { store: \"store://local/app/session#secret\" }
      rotation: { strategy: random, config: { length: 40, charset: hex } }
    LEGACY_TOKEN:
      from: { store: \"store://local/app/legacy#token\" }
";

fn put(dir: &std::path::Path, reference: &str, value: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(["store", "put", reference])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(value.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn rotate_status_history_rollback_get_exec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dsops.yaml"), CONFIG).unwrap();
    let d = dir.path();

    // The value never comes from the command line.
    let extra = dsops_in(d, &["store", "put", "store://local/app/legacy#token", "s3cret"]);
    assert_eq!(extra.status.code(), Some(2), "{}", stderr(&extra));
    let stored = put(d, "store://local/app/legacy#token", "legacy-value\n");
    assert_eq!(stored.status.code(), Some(0), "{}", stderr(&stored));
    assert!(!stdout(&stored).contains("legacy-value"));
    // Without a field: the whole value, which `from.store` without `#field` reads.
    let whole = put(d, "store://local/app/whole", "whole-value\n");
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));

    let all = dsops_in(d, &["rotate", "--env", "dev", "--all", "--force"]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let text = stdout(&all);
    assert!(text.contains("dev/JWT_SIGNING_KEY") && text.contains("dev/SESSION_SECRET"), "{text}");
    assert_eq!(text.matches("Completed").count(), 2, "{text}");

    let key = dsops_in(d, &["get", "--env", "dev", "--key", "JWT_SIGNING_KEY"]);
    assert_eq!(key.status.code(), Some(0), "{}", stderr(&key));
    let first = stdout(&key).trim().to_owned();
    assert_eq!(first.len(), 64);

    let status = dsops_in(d, &["rotation", "status", "--env", "dev", "-o", "json"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    let jwt = rows.as_array().unwrap().iter().find(|r| r["secret"] == "JWT_SIGNING_KEY").unwrap();
    assert_eq!(jwt["type"], "random");
    assert!(matches!(jwt["status"].as_str(), Some("Healthy" | "Due Soon")), "{jwt}");
    assert_eq!(jwt["generation"], 1);
    let legacy = rows.as_array().unwrap().iter().find(|r| r["secret"] == "LEGACY_TOKEN").unwrap();
    assert_eq!(legacy["status"], "Not rotated");
    let table = dsops_in(d, &["rotation", "status", "--env", "dev"]);
    let header = stdout(&table).lines().next().unwrap().to_owned();
    for column in ["SECRET", "TYPE", "LAST_ROTATED", "NEXT_DUE", "AGE", "STATUS"] {
        assert!(header.contains(column), "{header}");
    }

    let again = dsops_in(d, &["rotate", "--env", "dev", "--key", "JWT_SIGNING_KEY"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let second = stdout(&dsops_in(d, &["get", "--env", "dev", "--key", "JWT_SIGNING_KEY"]))
        .trim()
        .to_owned();
    assert_ne!(second, first);

    let rollback =
        dsops_in(d, &["rotation", "rollback", "--env", "dev", "--key", "JWT_SIGNING_KEY"]);
    assert_eq!(rollback.status.code(), Some(0), "{}", stderr(&rollback));
    let restored = stdout(&dsops_in(d, &["get", "--env", "dev", "--key", "JWT_SIGNING_KEY"]))
        .trim()
        .to_owned();
    assert_eq!(restored, first, "rollback returns the previous value");

    let history = dsops_in(
        d,
        &["rotation", "history", "--env", "dev", "--key", "JWT_SIGNING_KEY", "-o", "json"],
    );
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let history: serde_json::Value = serde_json::from_str(&stdout(&history)).unwrap();
    assert_eq!(history["runs"].as_array().unwrap().len(), 3);
    assert_eq!(history["runs"][0]["rollback"], true);
    assert!(history["receipts"].as_array().unwrap().len() >= 6, "signed receipts are listed");
    assert!(!history.to_string().contains(&first), "no value in the history");

    let exec = dsops_in(
        d,
        &[
            "exec",
            "--env",
            "dev",
            "--",
            "sh",
            "-c",
            "echo ${#JWT_SIGNING_KEY} $LEGACY_TOKEN; exit 3",
        ],
    );
    assert_eq!(exec.status.code(), Some(3), "the command's exit status is passed on");
    assert_eq!(stdout(&exec).trim(), "64 legacy-value");

    let unknown = dsops_in(d, &["rotate", "--env", "dev", "--key", "JWT_SIGNING_KY"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("did you mean \"JWT_SIGNING_KEY\""), "{}", stderr(&unknown));

    // Nothing in the control plane's files holds a value.
    for value in [first.as_str(), second.as_str(), "legacy-value"] {
        let hits =
            dsops_tests::rotation::tree_contains(&d.join(".dsops/cluster"), value.as_bytes());
        assert!(hits.is_empty(), "{hits:?}");
    }
}

#[test]
fn plan_refuses_overlap_for_a_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dsops.yaml"),
        "version: 1
secretStores:
  local: { type: file }
services:
  pg:
    type: postgresql
    host: 127.0.0.1
    database: app
    admin_store: store://local/pg/admin
envs:
  dev:
    DB:
      from: { store: \"store://local/app/db#password\", service: \"svc://pg?kind=db_password\" }
      rotation: { strategy: overlap, config: { username: app } }
",
    )
    .unwrap();
    let validate = dsops_in(dir.path(), &["validate"]);
    assert_eq!(
        validate.status.code(),
        Some(0),
        "overlap is accepted in config: {}",
        stderr(&validate)
    );
    let plan = dsops_in(dir.path(), &["plan", "--env", "dev"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        stderr(&plan).contains("envs.dev.DB: strategy overlap needs a target"),
        "{}",
        stderr(&plan)
    );
    // It names the target and the strategies that would work.
    assert!(stderr(&plan).contains("service pg (postgresql)"), "{}", stderr(&plan));
    assert!(stderr(&plan).contains("use two-key"), "{}", stderr(&plan));
    assert!(stderr(&plan).contains("or immediate"), "{}", stderr(&plan));
    // A Redis ACL user holds several passwords: the same variable on Redis plans.
    let redis = std::fs::read_to_string(dir.path().join("dsops.yaml"))
        .unwrap()
        .replace("type: postgresql", "type: redis")
        .replace("    database: app\n", "")
        .replace("kind=db_password", "kind=acl_password");
    std::fs::write(dir.path().join("dsops.yaml"), redis).unwrap();
    let plan = dsops_in(dir.path(), &["plan", "--env", "dev"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    assert!(stdout(&plan).contains("overlap"), "{}", stdout(&plan));
}

#[test]
fn rotate_refuses_a_hook_that_is_not_a_configured_service() {
    // The agent calls only programs and endpoints named as services in its own configuration;
    // a command or URL in rotation.config would be a way to make it run anything.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dsops.yaml"),
        "version: 1
secretStores:
  local: { type: file }
services:
  payments:
    type: stripe
    admin_store: store://local/stripe/admin#key
envs:
  dev:
    BIND:
      from: { store: \"store://local/stripe/key#value\", service: \"svc://payments?kind=restricted_key\" }
      rotation: { strategy: script, config: { command: /opt/rotate-stripe } }
",
    )
    .unwrap();
    let rotate = dsops_in(dir.path(), &["rotate", "--env", "dev", "--key", "BIND", "--force"]);
    assert_ne!(rotate.status.code(), Some(0));
    assert!(
        stderr(&rotate)
            .contains("dev/BIND: strategy script calls the script service named in from.service"),
        "{}",
        stderr(&rotate)
    );
}

#[test]
fn the_embedded_default_refuses_a_secret_that_needs_approval() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        CONFIG.replace("envs:\n", "rotation:\n  approvals:\n    dev: { required: 1 }\nenvs:\n");
    std::fs::write(dir.path().join("dsops.yaml"), config).unwrap();
    let refused =
        dsops_in(dir.path(), &["rotate", "--env", "dev", "--key", "SESSION_SECRET", "--force"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        stderr(&refused).contains("requires approval, which needs a cluster"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_store_type_this_version_cannot_run_validates_and_is_refused_at_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dsops.yaml"),
        "version: 1
secretStores:
  vault-prod: { type: vault, address: \"https://vault.company.com\" }
envs:
  dev:
    TOKEN: { from: { store: \"store://vault-prod/app/token#value\" }, rotation: { strategy: random } }
",
    )
    .unwrap();
    let validate = dsops_in(dir.path(), &["validate"]);
    assert_eq!(validate.status.code(), Some(0), "{}", stderr(&validate));
    let rotate = dsops_in(dir.path(), &["rotate", "--env", "dev", "--key", "TOKEN", "--force"]);
    assert_ne!(rotate.status.code(), Some(0));
    let said = stderr(&rotate);
    assert!(
        said.contains("dev/TOKEN: store \"vault-prod\" is of type vault, which is not supported in this version"),
        "{said}"
    );
    // Refused before anything started: no run, so nothing to quarantine or clean up.
    let history = dsops_in(
        dir.path(),
        &["rotation", "history", "--env", "dev", "--key", "TOKEN", "-o", "json"],
    );
    assert_eq!(history.status.code(), Some(0), "{}", stderr(&history));
    let runs: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
    let get = dsops_in(dir.path(), &["get", "--env", "dev", "--key", "TOKEN"]);
    assert_ne!(get.status.code(), Some(0));
    assert!(stderr(&get).contains("not supported in this version"), "{}", stderr(&get));
}

#[test]
fn a_reference_without_a_field_rotates_the_whole_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("dsops.yaml"),
        "version: 1
secretStores:
  local: { type: file }
envs:
  dev:
    WHOLE: { from: { store: \"store://local/app/whole\" }, rotation: { strategy: random, config: { length: 40 } } }
",
    )
    .unwrap();
    let stored = put(d, "store://local/app/whole", "first-whole-value\n");
    assert_eq!(stored.status.code(), Some(0), "{}", stderr(&stored));
    let first = dsops_in(d, &["get", "--env", "dev", "--key", "WHOLE"]);
    assert_eq!(stdout(&first).trim(), "first-whole-value", "{}", stderr(&first));
    let rotated = dsops_in(d, &["rotate", "--env", "dev", "--key", "WHOLE", "--force"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));
    let new = dsops_in(d, &["get", "--env", "dev", "--key", "WHOLE"]);
    let new = stdout(&new).trim().to_owned();
    assert_eq!(new.len(), 40, "{new:?}");
    assert_ne!(new, "first-whole-value");
}
