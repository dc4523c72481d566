//! `immediate` on real PostgreSQL, MariaDB and Redis through the embedded default: the password changes,
//! the new one is current and logs in, the old one no longer does, every step has a verified
//! receipt, and no value reaches the control plane's files.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::SecretValue;
use dsops_agent::adapter::Login;
use dsops_agent::store::Label;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, database_service, rotate, tree_contains};
use dsops_tests::{RunView, StepView};

async fn logs_in(flavor: Flavor, user: &str, password: &str) -> bool {
    flavor.login(user, &SecretValue::new(password.to_owned())).await.unwrap() == Login::Accepted
}

async fn immediate(flavor: Flavor) {
    let old = "Initial-canary-Passw0rd-1234567";
    let user = flavor.create_user("t41_app", old, false).await;
    let (service, admin) = database_service(flavor);
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}envs:\n  dev:\n    DB_PASSWORD:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind={}\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {} }} }}\n",
        flavor.kind(),
        user.name
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", old);

    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "DB_PASSWORD").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let steps: Vec<(&str, &str)> =
        run.steps.iter().map(|s| (s.step_name(), s.outcome_name())).collect();
    assert_eq!(
        steps,
        [
            ("stage", "succeeded"),
            ("apply", "succeeded"),
            ("verify", "succeeded"),
            ("promote", "succeeded")
        ]
    );
    let new = project.read("app/db", "password", Label::Current).unwrap();
    assert_ne!(new, old);
    assert!(regex_like_catalog_format(&new), "{new}");
    assert_eq!(project.read("app/db", "password", Label::Previous).as_deref(), Some(old));
    assert!(logs_in(flavor, &user.name, &new).await, "the current value logs in");
    assert!(!logs_in(flavor, &user.name, old).await, "the old value no longer does");

    // A second rotation takes the next generation and changes the value again.
    let second = rotate(&embedded, "dev", "DB_PASSWORD").await;
    assert_eq!(second.state_name(), "Completed");
    assert_eq!(second.generation, run.generation + 1);
    let newer = project.read("app/db", "password", Label::Current).unwrap();
    assert_ne!(newer, new);
    assert!(logs_in(flavor, &user.name, &newer).await);
    embedded.close().await;

    // No value in the control plane's files (its log, state and snapshots).
    for value in [old, new.as_str(), newer.as_str(), admin.password.as_str()] {
        let hits = tree_contains(&project.state.join("cluster"), value.as_bytes());
        assert!(hits.is_empty(), "a secret value is in {hits:?}");
    }
    user.drop_user().await;
}

/// The catalog's format for database passwords: `^[A-Za-z0-9_-]{32,64}$`.
fn regex_like_catalog_format(value: &str) -> bool {
    (32..=64).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate() {
    immediate(Flavor::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_immediate() {
    immediate(Flavor::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_immediate() {
    immediate(Flavor::Redis).await;
}
