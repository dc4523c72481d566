//! `random` (application secrets): generate to the configured length and charset, stage, promote;
//! no target is touched and the previous value is kept for rollback.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate};
use dsops_tests::{RunView, StepView};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_secret_rotates_in_the_store() {
    let project = Project::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  dev:\n    JWT_SIGNING_KEY:\n      from: { store: \"store://local/app/jwt#key\" }\n      rotation: { strategy: random, config: { length: 64, charset: hex } }\n",
    );
    let embedded = project.open().await;
    let first = rotate(&embedded, "dev", "JWT_SIGNING_KEY").await;
    assert_eq!(first.state_name(), "Completed", "{first:?}");
    let steps: Vec<&str> = first.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(steps, ["stage", "promote"]);
    let key = project.read("app/jwt", "key", Label::Current).unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    let second = rotate(&embedded, "dev", "JWT_SIGNING_KEY").await;
    assert_eq!(second.state_name(), "Completed");
    assert_eq!(project.read("app/jwt", "key", Label::Previous).as_deref(), Some(key.as_str()));
    assert_ne!(project.read("app/jwt", "key", Label::Current).unwrap(), key);
    // The receipts carry the value's fingerprint, never the value.
    assert!(first.steps.iter().all(|s| !s.fingerprint.is_empty() && !s.detail.contains(&key)));
    embedded.close().await;
}
