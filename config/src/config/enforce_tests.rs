//! Policy enforcement: mistakes in `policies` are named where they are, and an enforced policy
//! refuses a configuration with every violation listed at its secret.

use std::path::Path;

use super::load_str;
use super::tests::findings;

const BASE: &str = "version: 1
secretStores:
  local: { type: file }
";

#[test]
fn policy_mistakes_are_named_where_they_are() {
    let text = format!(
        "{BASE}policies:
  strict:
    envs: [prodd]
    maxAge: 10m
    strategies: [two-keys]
    charsets: [emoji]
    minLength: 0
rotation:
  enforce: [strickt, strict]
envs:
  prod: {{}}
"
    );
    let got = findings(&text);
    let fields: Vec<&str> = got.iter().map(|f| f.split(": error: ").nth(1).unwrap_or(f)).collect();
    assert_eq!(got.len(), 6, "{got:#?}");
    assert!(
        fields.iter().any(|f| f.starts_with(
            "policies.strict.envs[0]: unknown environment \"prodd\"; did you mean \"prod\"?"
        )),
        "{got:#?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("policies.strict.maxAge: at least 1h")),
        "{got:#?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with(
            "policies.strict.strategies: unknown strategy \"two-keys\"; did you mean \"two-key\"?"
        )),
        "{got:#?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("policies.strict.charsets: unknown charset \"emoji\"")),
        "{got:#?}"
    );
    assert!(fields.iter().any(|f| f.starts_with("policies.strict.minLength:")), "{got:#?}");
    assert!(
        fields.iter().any(|f| f.starts_with(
            "rotation.enforce[0]: unknown policy \"strickt\"; did you mean \"strict\"?"
        )),
        "{got:#?}"
    );
}

const POLICY: &str = "policies:
  company-standard:
    envs: [prod]
    maxAge: 90d
    strategies: [random, two-key]
    minLength: 32
    charsets: [alphanumeric, ascii-printable]
    requireRotation: true
";

fn vars() -> &'static str {
    "envs:
  prod:
    GOOD: { from: { store: \"store://local/a#k\" }, rotation: { strategy: random, schedule: \"0 3 1 * *\", config: { length: 40 } } }
    MANUAL: { from: { store: \"store://local/b#k\" }, rotation: { strategy: random, config: { length: 40 } } }
    YEARLY: { from: { store: \"store://local/c#k\" }, rotation: { strategy: random, schedule: \"0 3 1 1 *\", config: { length: 40 } } }
    SHORT: { from: { store: \"store://local/d#k\" }, rotation: { strategy: random, schedule: \"0 3 1 * *\", config: { length: 16, charset: numeric } } }
    STATIC: { from: { store: \"store://local/e#k\" } }
  dev:
    LOOSE: { from: { store: \"store://local/f#k\" } }
"
}

#[test]
fn an_enforced_policy_refuses_the_configuration_listing_every_violation() {
    let text = format!("{BASE}{POLICY}rotation:\n  enforce: [company-standard]\n{}", vars());
    let got = findings(&text);
    let expected = [
        "envs.prod.MANUAL: violates enforced policy company-standard: schedule: requires at least every 90d, has none (manual only)",
        "envs.prod.SHORT: violates enforced policy company-standard: minLength: requires 32, has 16",
        "envs.prod.SHORT: violates enforced policy company-standard: charsets: requires alphanumeric, ascii-printable, has numeric",
        "envs.prod.STATIC: violates enforced policy company-standard: requireRotation: requires a rotation, has none (never rotated by dsops)",
        "envs.prod.YEARLY: violates enforced policy company-standard: schedule: requires at least every 90d, has up to 36",
    ];
    let messages: Vec<&str> =
        got.iter().map(|f| f.split(": error: ").nth(1).unwrap_or(f)).collect();
    for line in expected {
        assert!(messages.iter().any(|m| m.starts_with(line)), "missing {line:?} in {got:#?}");
    }
    assert_eq!(got.len(), expected.len(), "dev is out of scope, GOOD meets it: {got:#?}");
    assert!(got.iter().all(|f| f.starts_with("dsops.yaml:")), "each names the file and line");
    // The same policy, not enforced, loads; `dsops rotation enforce` reports it on demand.
    let text = format!("{BASE}{POLICY}{}", vars());
    let loaded = load_str(&text, "dsops.yaml", Path::new(".")).expect("loads when not enforced");
    let policy = &loaded.config.policies["company-standard"];
    let now = chrono::Utc::now();
    let count: usize = loaded
        .resolved()
        .iter()
        .filter(|i| policy.covers(&i.secret.env))
        .map(|i| super::enforce::violations(policy, i, now).len())
        .sum();
    assert_eq!(count, 5);
}

#[test]
fn a_catalog_policy_with_requirements_is_enforced_like_one_in_dsops_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rotation-policies")).unwrap();
    std::fs::write(
        dir.path().join("rotation-policies/company-standard.yaml"),
        "apiVersion: dsops.io/v1
kind: RotationPolicy
metadata: { name: company-standard }
spec:
  strategy: random
  schedule: \"0 3 1 * *\"
  requirements: { envs: [prod], minLength: 48, requireRotation: true }
",
    )
    .unwrap();
    let config = |enforce: &str| {
        format!(
            "{BASE}rotation:\n  dataDir: {}\n  enforce: [{enforce}]\nenvs:\n  prod:\n    SHORT: {{ from: {{ store: \"store://local/a#k\" }}, rotation: {{ strategy: random, config: {{ length: 40 }} }} }}\n    STATIC: {{ from: {{ store: \"store://local/b#k\" }} }}\n",
            dir.path().display()
        )
    };
    let got = findings(&config("company-standard"));
    let messages: Vec<&str> =
        got.iter().map(|f| f.split(": error: ").nth(1).unwrap_or(f)).collect();
    assert_eq!(
        messages,
        [
            "envs.prod.SHORT: violates enforced policy company-standard: minLength: requires 48, has 40",
            "envs.prod.STATIC: violates enforced policy company-standard: requireRotation: requires a rotation, has none (never rotated by dsops)",
        ],
        "{got:#?}"
    );
    let unknown = findings(&config("company-standart"));
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert!(
        unknown[0].contains("rotation.enforce[0]: unknown policy \"company-standart\"; did you mean \"company-standard\"?"),
        "{unknown:#?}"
    );
}
