//! `overlap` on a real Redis ACL user through the embedded default: apply adds the new password
//! beside the old one, so during the grace period both log in (checked with `redis-cli` too);
//! retire waits for the connection that logged in with the old password before removing it,
//! says so in its receipt, and leaves exactly the new password. A first rotation (no earlier
//! value known to dsops) removes the password set before dsops; a second removes only the
//! previous one. Overlap on a target that holds one password is refused before a run starts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::{Login, PasswordTarget, RedisAdapter};
use dsops_agent::store::Label;
use dsops_proto::wire::admin::admin_server::Admin as _;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, database_service, rotate, rotate_request, wait_run};
use dsops_tests::{RunView, StepView, wait_for};

const OLD: &str = "Overlap-old-password-0000000000";

async fn login(user: &str, password: &str) -> Login {
    Flavor::Redis.login(user, &SecretValue::new(password.to_owned())).await.unwrap()
}

fn project(user: &str, grace: &str) -> Project {
    let (service, admin) = database_service(Flavor::Redis);
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}rotation:\n  defaults:\n    grace_period: {grace}\nenvs:\n  dev:\n    REDIS_PASSWORD:\n      from: {{ store: \"store://local/app/redis#password\", service: \"svc://db?kind=acl_password\" }}\n      rotation: {{ strategy: overlap, config: {{ username: {user} }} }}\n"
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project
}

/// The run once its retire step (after the grace period) is in.
async fn retired(
    embedded: &dsops_cli::embedded::Embedded,
    run_id: &str,
) -> dsops_proto::wire::admin::RunSummary {
    wait_for("the retire step", Duration::from_secs(90), || async {
        let run = wait_run(embedded, run_id).await;
        run.steps.iter().any(|s| s.step_name() == "retire").then_some(run)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_overlap_keeps_both_passwords_until_retire() {
    let user = Flavor::Redis.create_user("t50_overlap", OLD, true).await;
    // dsops has no value yet: OLD was set before dsops.
    let project = project(&user.name, "3s");
    // A consumer that logged in with the old password before the rotation.
    let consumer = Flavor::Redis.session(&user.name, OLD).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let embedded = project.open().await;
    let request = rotate_request("dev", "REDIS_PASSWORD");
    let response = embedded.admin().rotate(embedded.request(request)).await.unwrap().into_inner();
    let run_id = response.runs.first().expect("a run started").run_id.clone();

    // Promoted, in the grace period: the old and the new password both log in.
    let new = wait_for("promotion", Duration::from_secs(60), || async {
        project.read("app/redis", "password", Label::Current)
    })
    .await;
    assert_eq!(login(&user.name, &new).await, Login::Accepted);
    assert_eq!(login(&user.name, OLD).await, Login::Accepted, "the old password works in grace");
    assert_eq!(Flavor::Redis.login_with_client(&user.name, &new), Ok(true));
    assert_eq!(Flavor::Redis.login_with_client(&user.name, OLD), Ok(true));

    // The consumer moves on a little later; retire waited for it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(consumer);
    let run = retired(&embedded, &run_id).await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let steps: Vec<(&str, &str)> =
        run.steps.iter().map(|s| (s.step_name(), s.outcome_name())).collect();
    assert_eq!(
        steps,
        [
            ("stage", "succeeded"),
            ("apply", "succeeded"),
            ("verify", "succeeded"),
            ("promote", "succeeded"),
            ("retire", "succeeded")
        ]
    );
    let retire = run.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("passwords set before dsops removed"), "{retire:?}");
    assert!(
        retire.detail.contains("1 connection(s) from before the new password closed"),
        "{retire:?}"
    );
    assert_eq!(login(&user.name, OLD).await, Login::Refused);
    assert_eq!(Flavor::Redis.login_with_client(&user.name, OLD), Ok(false));
    assert_eq!(login(&user.name, &new).await, Login::Accepted);
    let adapter = RedisAdapter::new(Flavor::Redis.target());
    assert_eq!(adapter.password_count(&user.name).await.unwrap(), 1);

    // The second rotation removes the previous password only: one an operator added beside it
    // stays.
    adapter
        .add_password(&user.name, &SecretValue::new("Operator-added-1".to_owned()))
        .await
        .unwrap();
    let second = rotate(&embedded, "dev", "REDIS_PASSWORD").await;
    let second = retired(&embedded, &second.run_id).await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let newer = project.read("app/redis", "password", Label::Current).unwrap();
    assert_ne!(newer, new);
    assert_eq!(login(&user.name, &newer).await, Login::Accepted);
    assert_eq!(login(&user.name, &new).await, Login::Refused);
    assert_eq!(login(&user.name, "Operator-added-1").await, Login::Accepted);
    let retire = second.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("old password removed"), "{retire:?}");
    assert!(retire.detail.contains("no connection from before the new password"), "{retire:?}");
    embedded.close().await;
    user.drop_user().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_on_a_single_password_target_is_refused_before_a_run() {
    let user = Flavor::Postgres.create_user("t50_pg", OLD, false).await;
    let (service, admin) = database_service(Flavor::Postgres);
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}envs:\n  dev:\n    DB:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind=db_password\" }}\n      rotation: {{ strategy: overlap, config: {{ username: {} }} }}\n",
        user.name
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", OLD);
    let embedded = project.open().await;
    let refused = embedded
        .admin()
        .rotate(embedded.request(rotate_request("dev", "DB")))
        .await
        .expect_err("overlap on PostgreSQL is refused");
    assert!(
        refused
            .message()
            .contains("service db (postgresql) holds one password per user: use two-key"),
        "{refused:?}"
    );
    assert_eq!(login_pg(&user.name, OLD).await, Login::Accepted, "nothing changed");
    embedded.close().await;
    user.drop_user().await;
}

async fn login_pg(user: &str, password: &str) -> Login {
    Flavor::Postgres.login(user, &SecretValue::new(password.to_owned())).await.unwrap()
}
