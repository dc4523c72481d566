//! `dsops plan --env`: from configuration alone, each secret with its store, service, kind,
//! strategy, schedule, next due time and constraints.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use common::{dsops, stderr, stdout};

const AT: &str = "2026-11-28T12:00:00Z";

#[test]
fn plan_table_shows_each_secret() {
    let output = dsops(&["plan", "--env", "prod", "-f", "examples/dsops.yaml", "--at", AT]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let header = text.lines().next().unwrap();
    for column in
        ["SECRET", "STORE", "SERVICE", "KIND", "STRATEGY", "SCHEDULE", "NEXT DUE", "CONSTRAINTS"]
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
