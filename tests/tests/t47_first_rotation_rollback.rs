//! A first rotation (the secret has no current value yet) that fails after apply has nothing to
//! roll back to, and its value may already be on the target: rollback keeps that value. It
//! becomes current when it works, the run is quarantined with a clear reason when nothing works,
//! and no hook is ever asked to restore an empty value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::store::Label;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, immediate_project, rotate};
use dsops_tests::{RunView, StepView};

/// Keeps a file of valid tokens; verification fails for the first `N` calls (a counter file),
/// and every request is appended to a log so the test can read what the program was asked.
const PROGRAM: &str = r#"
import json, sys
target, fail_first = sys.argv[1], int(sys.argv[2])
raw = sys.stdin.read()
open(target + ".requests", "a").write(raw.strip() + "\n")
request = json.loads(raw)
try:
    valid = set(open(target).read().split())
except FileNotFoundError:
    valid = set()
step, value = request["step"], request["value"]
outcome, detail = "succeeded", ""
if step == "apply":
    valid.add(value); detail = "token added"
elif step == "verify":
    try:
        calls = int(open(target + ".verified").read())
    except FileNotFoundError:
        calls = 0
    open(target + ".verified", "w").write(str(calls + 1))
    ok = value in valid and calls >= fail_first
    outcome, detail = ("succeeded", "token accepted") if ok else ("not_applied", "token refused")
elif step == "rollback":
    valid.discard(request.get("current") or ""); valid.add(value); detail = "restored"
elif step == "check":
    outcome = "succeeded" if value in valid else "not_applied"
open(target, "w").write("\n".join(sorted(valid)))
print(json.dumps({"outcome": outcome, "detail": detail}))
"#;

/// A script project whose secret has no value yet; verification fails `fail_first` times.
fn script_project(fail_first: u32) -> (Project, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("tokens.py");
    std::fs::write(&program, PROGRAM).unwrap();
    let target = dir.path().join("valid-tokens.txt");
    let yaml = format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  tokens:\n    type: script\n    command: [python3, {}, {}, \"{fail_first}\"]\n    timeout: 20s\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    API_TOKEN:\n      from: {{ store: \"store://local/app/token#value\", service: \"svc://tokens?kind=secret\" }}\n      rotation: {{ strategy: script }}\n",
        program.display(),
        target.display()
    );
    (Project::new(&yaml), target, dir)
}

/// Every request the program got, as JSON.
fn requests(target: &std::path::Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(format!("{}.requests", target.display())).unwrap();
    log.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_keeps_the_first_value_when_it_works() {
    // The run's five verifications fail; the sixth (asked by rollback) passes.
    let (project, target, _dir) = script_project(5);
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    let rollback = run.steps.iter().find(|s| s.step_name() == "rollback").expect("a rollback step");
    assert_eq!(rollback.outcome_name(), "succeeded", "{run:?}");
    assert!(rollback.detail.contains("kept the run's value"), "{}", rollback.detail);
    let kept = project.read("app/token", "value", Label::Current).expect("a current value");
    assert!(project.read("app/token", "value", Label::Pending).is_none());
    let valid = std::fs::read_to_string(&target).unwrap();
    assert_eq!(valid.split_whitespace().collect::<Vec<_>>(), [kept.as_str()]);
    // The fingerprint of what was kept is the secret's, and the history says what happened.
    assert_eq!(rollback.fingerprint, run.steps[0].fingerprint, "{run:?}");
    let status = embedded
        .admin()
        .rotation_status(embedded.request(dsops_proto::wire::admin::RotationStatusRequest {
            env: "dev".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(status.secrets[0].last_rotated.is_some(), "{status:?}");
    for request in requests(&target) {
        assert_ne!(request["value"], "", "a hook was handed an empty value: {request}");
        assert_ne!(request["step"], "rollback", "nothing to restore, yet a rollback: {request}");
    }
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_run_is_quarantined_when_nothing_works() {
    let (project, target, _dir) = script_project(u32::MAX);
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Quarantined", "{run:?}");
    assert!(run.detail.contains("no earlier value to restore"), "{}", run.detail);
    assert!(run.detail.contains("stays pending"), "{}", run.detail);
    assert!(project.read("app/token", "value", Label::Current).is_none());
    let pending = project.read("app/token", "value", Label::Pending).expect("kept pending");
    assert!(std::fs::read_to_string(&target).unwrap().contains(&pending));
    for request in requests(&target) {
        assert_ne!(request["value"], "", "a hook was handed an empty value: {request}");
        assert_ne!(request["step"], "rollback", "{request}");
    }
    embedded.close().await;
}

/// PostgreSQL: the role's `VALID UNTIL` lies in the past, so no password logs in. Apply sets the
/// new one, verification fails, and with no earlier value the run is quarantined with the new
/// value left pending (it is the password the database holds now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_run_with_nothing_that_logs_in_is_quarantined() {
    let flavor = Flavor::Postgres;
    let user = flavor.create_user("first_rot", "Unknown-to-dsops-000000000000001", true).await;
    flavor.admin(&[format!("alter role \"{}\" valid until '2000-01-01'", user.name)]).await;
    let project = immediate_project(flavor, &user.name, "");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "DB").await;
    assert_eq!(run.state_name(), "Quarantined", "{run:?}");
    assert!(run.detail.contains("no earlier value to restore"), "{}", run.detail);
    assert!(run.detail.contains(&format!("does not log in as {}", user.name)), "{}", run.detail);
    let pending = project.read("app/db", "password", Label::Pending).expect("kept pending");
    assert!(project.read("app/db", "password", Label::Current).is_none());
    // Once the role may log in again, the kept value is the one that works.
    flavor.admin(&[format!("alter role \"{}\" valid until 'infinity'", user.name)]).await;
    assert_eq!(flavor.login_with_client(&user.name, &pending), Ok(true));
    embedded.close().await;
    user.drop_user().await;
}
