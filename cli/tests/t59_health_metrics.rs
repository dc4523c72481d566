//! `dsops rotation health` on the embedded default: the table, and `--export prometheus`, which
//! `promtool check metrics` (Debian's prometheus package, a linter nobody here wrote) accepts;
//! the families the issue names are there with the values of the rotations that ran.

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
  production:
    API_KEY:
      from: { store: \"store://local/app/api#key\" }
      rotation: { strategy: random, schedule: \"0 3 * * *\" }
    NEVER:
      from: { store: \"store://local/app/never#v\" }
      rotation: { strategy: random, schedule: \"0 3 * * *\" }
  dev:
    OTHER:
      from: { store: \"store://local/dev/other#v\" }
      rotation: { strategy: random }
";

fn promtool(text: &str) -> (Option<i32>, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; the test script installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), said)
}

#[test]
fn prometheus_export_passes_promtool_and_counts_the_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dsops.yaml"), CONFIG).unwrap();
    for _ in 0..2 {
        let rotated = dsops_in(d, &["rotate", "--env", "production", "--key", "API_KEY"]);
        assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));
    }
    let out = dsops_in(d, &["rotation", "health", "--export", "prometheus"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (code, said) = promtool(&text);
    assert_eq!(code, Some(0), "promtool: {said}\n{text}");
    for line in [
        "dsops_rotations_total{strategy=\"random\",result=\"Completed\"} 2",
        "dsops_rotation_duration_seconds_count 2",
        "dsops_rotation_duration_seconds_bucket{le=\"+Inf\"} 2",
        "dsops_secret_overdue{env=\"production\",key=\"API_KEY\",service=\"-\"} 0",
        "dsops_secret_overdue{env=\"production\",key=\"NEVER\",service=\"-\"} 1",
        "dsops_raft_is_leader 1",
        "dsops_notifications_backlog 0",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    assert!(text.contains("dsops_secret_age_seconds{env=\"production\",key=\"API_KEY\""));
    assert!(
        !text.contains("dsops_secret_age_seconds{env=\"production\",key=\"NEVER\""),
        "a secret that never rotated has no age"
    );
    assert!(text.contains("dsops_agents_connected{segment=\"default\"} 1"), "{text}");

    // One environment's series only.
    let dev =
        stdout(&dsops_in(d, &["rotation", "health", "--env", "dev", "--export", "prometheus"]));
    assert!(dev.contains("key=\"OTHER\"") && !dev.contains("key=\"API_KEY\""), "{dev}");
    assert_eq!(promtool(&dev).0, Some(0));

    let table = dsops_in(d, &["rotation", "health", "--env", "production"]);
    let shown = stdout(&table);
    assert!(shown.contains("overdue") && shown.contains("rotations completed"), "{shown}");
    let json = dsops_in(d, &["rotation", "health", "--env", "production", "--output", "json"]);
    let figures: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let value = |what: &str| {
        figures.as_array().unwrap().iter().find(|f| f["what"] == what).unwrap()["value"].as_f64()
    };
    assert_eq!(value("secrets"), Some(2.0));
    assert_eq!(value("overdue"), Some(1.0));
    assert_eq!(value("rotations completed"), Some(2.0));
}

#[test]
fn the_documented_alert_rules_pass_promtool() {
    let page = std::fs::read_to_string(common::root().join("docs/observability.md")).unwrap();
    let alerts = page.split("## Alerts").nth(1).expect("docs/observability.md has ## Alerts");
    let rules = alerts
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block under ## Alerts");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dsops-rules.yml");
    std::fs::write(&file, rules).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian's prometheus package; the test script installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check rules: {said}\n{rules}");
    assert!(said.contains("SUCCESS: 9 rules found"), "{said}");
}
