//! The `script` strategy: a user program (named in the agent's own configuration) applies,
//! verifies and retires under the same protocol, through the documented JSON contract. Here it
//! manages a file of valid tokens, like an API that holds two keys during a grace period.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate};
use dsops_tests::{RunView, StepView};

const PROGRAM: &str = r#"
import json, os, sys
target = sys.argv[1]
fail_verify = "fail-verify" in sys.argv[2:]
show_env = "show-env" in sys.argv[2:]
request = json.load(sys.stdin)
try:
    valid = set(open(target).read().split())
except FileNotFoundError:
    valid = set()
step, value, other = request["step"], request["value"], request.get("current")
outcome, detail = "succeeded", ""
if step == "apply":
    valid.add(value); detail = "token added"
elif step == "verify":
    ok = value in valid and not fail_verify
    outcome, detail = ("succeeded", "token accepted") if ok else ("not_applied", "token refused")
    if show_env:
        detail = "env: " + ",".join(sorted(os.environ))
elif step == "retire":
    valid.discard(other or ""); detail = "old token revoked"
elif step == "rollback":
    valid.add(value); valid.discard(other or ""); detail = "new token removed"
elif step == "check":
    checked = request["checked_step"]
    present = value in valid
    if checked == "retire":
        present = (other or "") not in valid
    outcome = "succeeded" if present else "not_applied"
open(target, "w").write("\n".join(sorted(valid)))
print(json.dumps({"outcome": outcome, "detail": detail}))
"#;

fn project(extra: &str) -> (Project, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("tokens.py");
    std::fs::write(&program, PROGRAM).unwrap();
    let target = dir.path().join("valid-tokens.txt");
    std::fs::write(&target, "first-token-000000000000000000000\n").unwrap();
    let yaml = format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  tokens:\n    type: script\n    command: [python3, {}, {}{extra}]\n    timeout: 20s\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    API_TOKEN:\n      from: {{ store: \"store://local/app/token#value\", service: \"svc://tokens?kind=secret\" }}\n      rotation: {{ strategy: script }}\n",
        program.display(),
        target.display()
    );
    let project = Project::new(&yaml);
    // Keep the program's directory alive with the project.
    std::mem::forget(dir);
    project.put("app/token", "value", "first-token-000000000000000000000");
    (project, target)
}

fn valid(target: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(target).unwrap().split_whitespace().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_applies_verifies_and_retires() {
    let (project, target) = project("");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let steps: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "apply", "verify", "promote", "retire"]);
    let current = project.read("app/token", "value", Label::Current).unwrap();
    assert_eq!(valid(&target), vec![current.clone()], "the new token is the only valid one");
    assert!(run.steps.iter().any(|s| s.detail == "old token revoked"), "{run:?}");
    assert!(run.steps.iter().all(|s| !s.detail.contains(&current)));
    embedded.close().await;
}

/// The program gets nothing from the agent's environment (which holds, in this test process,
/// the database admin URLs with their passwords) but the search path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_gets_an_empty_environment_but_path() {
    let (project, _) = project(", show-env");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let verify = run.steps.iter().find(|s| s.step_name() == "verify").unwrap();
    let names: Vec<&str> = verify
        .detail
        .strip_prefix("env: ")
        .unwrap_or_else(|| panic!("{verify:?}"))
        .split(',')
        .collect();
    assert!(names.contains(&"PATH"), "{names:?}");
    // What the interpreter or its launcher adds itself (PWD, LC_CTYPE, a version manager's own)
    // may be there; nothing of this process's environment, whose DSOPS_TEST_* URLs hold the
    // databases' admin passwords and whose CARGO_* variables cargo set.
    assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")), "the check can fail");
    assert!(
        names.iter().all(|n| !n.starts_with("DSOPS") && !n.starts_with("CARGO") && *n != "HOME"),
        "{names:?}"
    );
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_verification_rolls_back() {
    let (project, target) = project(", fail-verify");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_TOKEN").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    assert!(run.detail.contains("token refused"), "{}", run.detail);
    assert_eq!(
        project.read("app/token", "value", Label::Current).as_deref(),
        Some("first-token-000000000000000000000")
    );
    assert!(project.read("app/token", "value", Label::Pending).is_none());
    assert_eq!(valid(&target), ["first-token-000000000000000000000"], "the new token was removed");
    embedded.close().await;
}
