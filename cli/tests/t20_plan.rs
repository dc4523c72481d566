//! `dsops plan --env`: from configuration alone, each secret with its store, service, kind,
//! strategy, schedule, next due time and constraints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{dsops, dsops_in, stderr, stdout};

const AT: &str = "2026-11-28T12:00:00Z";

#[test]
fn plan_table_shows_each_secret() {
    let output = dsops(&["plan", "--env", "prod", "-f", "examples/dsops.yaml", "--at", AT]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let header = text.lines().next().unwrap();
    for column in
        ["SECRET", "STORE", "SERVICE", "KIND", "STRATEGY", "SCHEDULE", "NEXT START", "CONSTRAINTS"]
    {
        assert!(header.contains(column), "{header}");
    }
    let orders = text.lines().find(|l| l.contains("ORDERS_DB_PASSWORD")).unwrap();
    assert!(orders.contains("pg-prod (postgresql) @prod-db"), "{orders}");
    assert!(orders.contains("two-key"), "{orders}");
    assert!(orders.contains("2026-12-05 02:00 UTC (in 6d)"), "{orders}");
    assert!(orders.contains("approval required"), "{orders}");
    assert!(orders.contains("window 0 1 * * 6 for 4h (UTC)"), "{orders}");
    assert!(
        text.lines().any(|l| l.contains("LEGACY_API_TOKEN") && l.contains("does not rotate")),
        "{text}"
    );
}

#[test]
fn plan_json_is_machine_readable() {
    let output =
        dsops(&["plan", "--env", "dev", "-f", "examples/dsops.yaml", "--at", AT, "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let db = rows.iter().find(|r| r["key"] == "DB_PASSWORD").unwrap();
    assert_eq!(db["strategy"], "immediate");
    assert_eq!(db["service_type"], "postgresql");
    assert_eq!(db["kind"], "db_password");
    assert_eq!(db["next_due"], "2026-11-29T03:00:00Z");
    assert_eq!(db["approval_required"], false);
    assert_eq!(db["store"], "store://local/app/db#password");
}

#[test]
fn unknown_environment_is_invalid_input_with_a_hint() {
    let output = dsops(&["plan", "--env", "prd", "-f", "examples/dsops.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: environment \"prd\" is not defined in examples/dsops.yaml; did you mean \"prod\"?\n"
    );
}

#[test]
fn plan_refuses_an_invalid_configuration() {
    let output = dsops(&["plan", "--env", "dev", "-f", "examples/invalid/strategies.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).ends_with("error: 3 problems found; nothing was changed\n"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn plan_applies_blackouts_and_jitter_and_says_what_a_start_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dsops.yaml"),
        "version: 1
secretStores:
  local: { type: file }
services:
  sessions: { type: app-secret, rate_limit: 10/minute }
rotation:
  defaults: { jitter: 30m }
  promotion:
    - { env: dev, soak: 1h }
    - { env: prod }
  blackouts:
    - { name: freeze, from: \"2026-11-28T00:00\", to: \"2026-12-01T00:00\", envs: [prod] }
envs:
  dev:
    K: { from: { store: \"store://local/dev/k#v\" }, rotation: { strategy: random, schedule: \"0 3 * * *\" } }
  prod:
    K: { from: { store: \"store://local/prod/k#v\" }, rotation: { strategy: random, schedule: \"0 3 * * *\" } }
    S: { from: { store: \"store://local/prod/s#v\", service: \"svc://sessions?kind=session_secret\" }, rotation: { strategy: random, schedule: \"0 3 * * *\" } }
",
    )
    .unwrap();
    let json = |env: &str| -> serde_json::Value {
        let output = dsops_in(dir.path(), &["plan", "--env", env, "--at", AT, "-o", "json"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        serde_json::from_str(&stdout(&output)).unwrap()
    };
    let dev = json("dev");
    let start = dev[0]["next_due"].as_str().unwrap();
    assert!(start.starts_with("2026-11-29T03:"), "jittered after Sunday's 03:00 firing: {start}");
    assert_ne!(start, "2026-11-29T03:00:00Z", "a 30m jitter moves it (for this key)");
    assert_eq!(dev[0]["waits"].as_array().unwrap().len(), 0);
    let prod = json("prod");
    let key = prod.as_array().unwrap().iter().find(|r| r["key"] == "K").unwrap();
    assert!(
        key["next_due"].as_str().unwrap().starts_with("2026-12-01T03:"),
        "the freeze skips Sunday and Monday: {key}"
    );
    let waits: Vec<&str> =
        key["waits"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(
        waits,
        [
            "blackout freeze until 2026-12-01 00:00 UTC",
            "promotion line K: after dev/K and its soak (1h)"
        ]
    );
    let s = prod.as_array().unwrap().iter().find(|r| r["key"] == "S").unwrap();
    assert!(
        s["waits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == "rate limit 10/minute of service sessions"),
        "{s}"
    );
    let table = stdout(&dsops_in(dir.path(), &["plan", "--env", "prod", "--at", AT]));
    assert!(table.contains("WAITS FOR") && table.contains("blackout freeze until"), "{table}");
}
