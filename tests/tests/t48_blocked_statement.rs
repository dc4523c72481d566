//! A password change blocked on a lock must not commit after dsops has given up on it. Another
//! session holds a lock on the user in an open transaction for the whole run: every apply waits,
//! the server cancels it at its own limit (below the agent's), the run rolls back, and only then
//! is the lock released. Nothing queued behind the lock may land afterwards: the store's current
//! value still logs in (checked with the server's own client).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::sync::Arc;
use std::time::Duration;

use dsops_agent::store::Label;
use dsops_cli::embedded::{Embedded, EmbeddedOptions};
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{immediate_project, rotate};
use sqlx::{AssertSqlSafe, Connection};

/// The session holding the lock.
enum Holder {
    Postgres(sqlx::PgConnection),
    MariaDb(sqlx::MySqlConnection),
}

const INITIAL: &str = "Initial-password-0000000000000001";

async fn blocked_apply_rolls_back_and_never_lands(flavor: Flavor) {
    let user = flavor.create_user("blocked", INITIAL, true).await;
    let project = immediate_project(flavor, &user.name, "");
    project.put("app/db", "password", INITIAL);

    // The lock: an open transaction that changed the user and has not ended.
    let url = flavor.service().url();
    let name = &user.name;
    let holder = match flavor {
        Flavor::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("begin").execute(&mut conn).await.unwrap();
            let hold = format!("alter role \"{name}\" connection limit -1");
            sqlx::raw_sql(AssertSqlSafe(hold)).execute(&mut conn).await.unwrap();
            Holder::Postgres(conn)
        }
        Flavor::MariaDb => {
            let mut conn = sqlx::MySqlConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("lock tables mysql.global_priv write").execute(&mut conn).await.unwrap();
            Holder::MariaDb(conn)
        }
        // Redis runs one command at a time: an ACL change cannot wait on a lock.
        Flavor::Redis => panic!("no blocked statement on Redis"),
    };

    // A short limit per call, so five blocked attempts take seconds, not minutes.
    let options = EmbeddedOptions {
        tune_agent: Some(Arc::new(|config| config.target_timeout = Duration::from_secs(2))),
        ..EmbeddedOptions::default()
    };
    let embedded = Embedded::open_with(&project.state, &project.config, &project.loaded(), options)
        .await
        .unwrap();
    let run = rotate(&embedded, "dev", "DB").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    let applies: Vec<_> = run.steps.iter().filter(|s| s.step_name() == "apply").collect();
    assert!(!applies.is_empty(), "{run:?}");
    // The server cancelled each blocked statement itself (or the read before it): the agent
    // knew nothing had happened, never "indeterminate" or a time-out.
    for apply in &applies {
        assert!(matches!(apply.outcome_name(), "not_applied" | "retryable"), "{apply:?}");
        assert!(
            apply.detail.contains("interrupted")
                || apply.detail.contains("timeout")
                || apply.detail.contains("canceling"),
            "{apply:?}"
        );
    }
    embedded.close().await;

    // Now release the lock, and give anything still queued behind it time to land.
    match holder {
        Holder::Postgres(mut conn) => {
            sqlx::raw_sql("rollback").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Holder::MariaDb(mut conn) => {
            sqlx::raw_sql("unlock tables").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let current = project.read("app/db", "password", Label::Current).unwrap();
    assert_eq!(current, INITIAL);
    assert!(project.read("app/db", "password", Label::Pending).is_none());
    assert_eq!(
        flavor.login_with_client(&user.name, &current),
        Ok(true),
        "the current value logs in"
    );
    user.drop_user().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blocked_alter_role_never_lands_late() {
    blocked_apply_rolls_back_and_never_lands(Flavor::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_blocked_alter_user_never_lands_late() {
    blocked_apply_rolls_back_and_never_lands(Flavor::MariaDb).await;
}
