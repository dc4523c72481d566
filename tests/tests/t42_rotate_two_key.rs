//! `two-key` on real PostgreSQL, MariaDB and Redis: the inactive user gets the new password, becomes
//! current with its name, and the old user is disabled after the grace period; the next rotation
//! turns back. Users whose privileges differ are refused before anything changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_agent::SecretValue;
use dsops_agent::adapter::Login;
use dsops_agent::store::Label;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, database_service, rotate};
use dsops_tests::{RunView, StepView};

async fn login(flavor: Flavor, user: &str, password: &str) -> Login {
    flavor.login(user, &SecretValue::new(password.to_owned())).await.unwrap()
}

fn config(flavor: Flavor, a: &str, b: &str) -> (String, dsops_tests::databases::ServerUrl) {
    let (service, admin) = database_service(flavor);
    let yaml = format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}rotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    APP_DB_PASSWORD:\n      from: {{ store: \"store://local/app/db2#password\", service: \"svc://db?kind={}\" }}\n      rotation: {{ strategy: two-key, config: {{ usernames: [{a}, {b}] }} }}\n",
        flavor.kind()
    );
    (yaml, admin)
}

async fn two_key(flavor: Flavor) {
    let a = flavor.create_user("t42_a", "First-A-password-000000000000", true).await;
    let b = flavor.create_user("t42_b", "First-B-password-000000000000", true).await;
    let (yaml, admin) = config(flavor, &a.name, &b.name);
    let project = Project::new(&yaml);
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db2", "username", &a.name);
    project.put("app/db2", "password", "First-A-password-000000000000");

    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "APP_DB_PASSWORD").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let current_user = project.read("app/db2", "username", Label::Current).unwrap();
    let current = project.read("app/db2", "password", Label::Current).unwrap();
    assert_eq!(current_user, b.name, "the inactive user took over");
    assert_eq!(login(flavor, &b.name, &current).await, Login::Accepted);
    // a is disabled: even its old, correct password is refused now.
    assert_eq!(login(flavor, &a.name, "First-A-password-000000000000").await, Login::Refused);
    let retire = run.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains(&a.name), "{retire:?}");
    assert_eq!(
        project.read("app/db2", "username", Label::Previous).as_deref(),
        Some(a.name.as_str())
    );

    // The next rotation turns back to a, with a new password, and disables b.
    let second = rotate(&embedded, "dev", "APP_DB_PASSWORD").await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let user = project.read("app/db2", "username", Label::Current).unwrap();
    let password = project.read("app/db2", "password", Label::Current).unwrap();
    assert_eq!(user, a.name);
    assert_eq!(login(flavor, &a.name, &password).await, Login::Accepted);
    assert_eq!(login(flavor, &b.name, &current).await, Login::Refused);
    embedded.close().await;
    for user in [a, b] {
        user.drop_user().await;
    }
}

async fn different_grants_are_refused(flavor: Flavor) {
    let a = flavor.create_user("t42_ga", "Grant-A-password-000000000000", true).await;
    let b = flavor.create_user("t42_gb", "Grant-B-password-000000000000", false).await;
    let (yaml, admin) = config(flavor, &a.name, &b.name);
    let project = Project::new(&yaml);
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db2", "username", &a.name);
    project.put("app/db2", "password", "Grant-A-password-000000000000");
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "APP_DB_PASSWORD").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    assert!(run.detail.contains("different privileges"), "{}", run.detail);
    assert!(
        run.steps.iter().all(|s| s.step_name() != "apply"),
        "nothing was applied: {:?}",
        run.steps
    );
    // Nothing changed: a still logs in with its password, which is still current.
    assert_eq!(
        project.read("app/db2", "password", Label::Current).as_deref(),
        Some("Grant-A-password-000000000000")
    );
    assert_eq!(login(flavor, &a.name, "Grant-A-password-000000000000").await, Login::Accepted);
    assert!(project.read("app/db2", "password", Label::Pending).is_none());
    embedded.close().await;
    for user in [a, b] {
        user.drop_user().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_key() {
    two_key(Flavor::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_key() {
    two_key(Flavor::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_key_refuses_different_grants() {
    different_grants_are_refused(Flavor::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_key_refuses_different_grants() {
    different_grants_are_refused(Flavor::MariaDb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_key() {
    two_key(Flavor::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_key_refuses_different_grants() {
    different_grants_are_refused(Flavor::Redis).await;
}
