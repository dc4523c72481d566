//! `dsops rotation enforce` through the real binary on the embedded default: violations from the
//! configuration and from the recorded ages, as a table and as JSON, exit 1; and an enforced
//! policy (`rotation.enforce`) makes `validate` refuse the configuration, listing every
//! violation with its line (exit 2).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Each test binary uses part of the shared helpers.
mod common;

use common::{dsops_in, stderr, stdout};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
policies:
  company-standard:
    envs: [dev]
    maxAge: 30d
    minLength: 48
    charsets: [alphanumeric]
    requireRotation: true
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

/// The report (a failing command prints its `{"error": …}` document after it).
fn first_json(text: &str) -> serde_json::Value {
    serde_json::Deserializer::from_str(text).into_iter().next().unwrap().unwrap()
}

fn rules(json: &serde_json::Value) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = json["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["secret"].as_str().unwrap().to_owned(), v["rule"].as_str().unwrap().to_owned()))
        .collect();
    rules.sort();
    rules
}

#[test]
fn enforce_lists_violations_and_an_enforced_policy_refuses_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dsops.yaml"), CONFIG).unwrap();

    let before = dsops_in(d, &["rotation", "enforce", "--policy", "company-standard"]);
    assert_eq!(before.status.code(), Some(1), "{}", stderr(&before));
    let table = stdout(&before);
    for expected in
        ["SECRET", "dev/LEGACY_TOKEN", "requireRotation", "never rotated by dsops", "minLength"]
    {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    assert!(
        stderr(&before).contains("violation(s) of policy company-standard"),
        "{}",
        stderr(&before)
    );

    let json =
        dsops_in(d, &["rotation", "enforce", "--policy", "company-standard", "--output", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report = first_json(&stdout(&json));
    assert_eq!(report["checked"], 3);
    let expected = [
        ("dev/JWT_SIGNING_KEY", "maxAge"),
        ("dev/LEGACY_TOKEN", "requireRotation"),
        ("dev/SESSION_SECRET", "charsets"),
        ("dev/SESSION_SECRET", "maxAge"),
        ("dev/SESSION_SECRET", "minLength"),
        ("dev/SESSION_SECRET", "schedule"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(s, r)| (s.to_string(), r.to_string())).collect();
    assert_eq!(rules(&report), expected);

    // Rotating the JWT key makes it young enough.
    let rotated = dsops_in(d, &["rotate", "--env", "dev", "--key", "JWT_SIGNING_KEY", "--force"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));
    let after =
        dsops_in(d, &["rotation", "enforce", "--policy", "company-standard", "--output", "json"]);
    let report = first_json(&stdout(&after));
    assert!(!rules(&report).contains(&("dev/JWT_SIGNING_KEY".into(), "maxAge".into())), "{report}");

    let unknown = dsops_in(d, &["rotation", "enforce", "--policy", "company-standart"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("did you mean \"company-standard\"?"),
        "{}",
        stderr(&unknown)
    );

    // Enforced: the configuration is refused, every violation at its line.
    let enforced = CONFIG
        .replace("envs:\n  dev:\n", "rotation:\n  enforce: [company-standard]\nenvs:\n  dev:\n");
    std::fs::write(d.join("dsops.yaml"), enforced).unwrap();
    let validate = dsops_in(d, &["validate"]);
    assert_eq!(validate.status.code(), Some(2), "{}", stdout(&validate));
    let said = format!("{}{}", stdout(&validate), stderr(&validate));
    for line in [
        "envs.dev.SESSION_SECRET: violates enforced policy company-standard: schedule",
        "envs.dev.SESSION_SECRET: violates enforced policy company-standard: minLength: requires 48, has 40",
        "envs.dev.SESSION_SECRET: violates enforced policy company-standard: charsets: requires alphanumeric, has hex",
        "envs.dev.LEGACY_TOKEN: violates enforced policy company-standard: requireRotation",
    ] {
        assert!(said.contains(line), "{line:?} in\n{said}");
    }
    assert!(said.contains("dsops.yaml:"), "{said}");
}
