//! Every password adapter passes the same suite against a real server: changes take effect and
//! only the new password logs in, values that would break a quoted statement are harmless,
//! failures are classed (not applied / retryable / indeterminate), and the retire helpers work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::{
    DatabaseTarget, ErrorClass, Login, MySqlAdapter, PasswordTarget, PostgresAdapter,
};
use dsops_tests::databases::Flavor;
use dsops_tests::wait_for;

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.to_owned())
}

async fn changes_take_effect(adapter: &impl PasswordTarget, flavor: Flavor) {
    let user = flavor.create_user("t40_change", "Old-pass-1", false).await;
    assert_eq!(adapter.login(&user.name, &value("Old-pass-1")).await.unwrap(), Login::Accepted);
    adapter.set_password(&user.name, &value("New-pass-2")).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("New-pass-2")).await.unwrap(), Login::Accepted);
    assert_eq!(adapter.login(&user.name, &value("Old-pass-1")).await.unwrap(), Login::Refused);
    // Idempotent: the same change again is fine and changes nothing.
    adapter.set_password(&user.name, &value("New-pass-2")).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("New-pass-2")).await.unwrap(), Login::Accepted);
    user.drop_user().await;
}

async fn hostile_values_are_harmless(adapter: &impl PasswordTarget, flavor: Flavor) {
    let user = flavor.create_user("t40_hostile", "Start-pass-1", false).await;
    for hostile in [
        "a'b\"c\\d$$e`f;--g",
        "'; DROP ROLE postgres; --",
        "$dsops_0011223344556677$ x",
        "pässwörd-ünïcode",
        "back\\slash\\n-not-a-newline\\",
    ] {
        adapter.set_password(&user.name, &value(hostile)).await.unwrap();
        assert_eq!(
            adapter.login(&user.name, &value(hostile)).await.unwrap(),
            Login::Accepted,
            "{hostile:?}"
        );
    }
    assert!(adapter.user_exists(&user.name).await.unwrap());
    user.drop_user().await;
}

async fn failures_are_classed<A: PasswordTarget>(
    make: impl Fn(DatabaseTarget) -> A,
    flavor: Flavor,
) {
    let adapter = make(flavor.target());
    let missing = dsops_tests::unique_name("t40_missing");
    let error = adapter.set_password(&missing, &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::NotApplied, "{error}");
    assert!(!adapter.user_exists(&missing).await.unwrap());
    assert_eq!(adapter.login(&missing, &value("x")).await.unwrap(), Login::Refused);

    // A server that is not there: nothing was sent, so retrying is safe.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable =
        make(DatabaseTarget { port: closed, timeout: Duration::from_secs(3), ..flavor.target() });
    let error = unreachable.set_password("x", &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");
    assert!(!error.message.contains("Whatever"), "{error}");
    let error = unreachable.login("x", &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");
}

async fn login_can_be_disabled(adapter: &impl PasswordTarget, flavor: Flavor) {
    let user = flavor.create_user("t40_lock", "Lock-pass-1", false).await;
    adapter.set_login_enabled(&user.name, false).await.unwrap();
    adapter.set_login_enabled(&user.name, false).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("Lock-pass-1")).await.unwrap(), Login::Refused);
    adapter.set_login_enabled(&user.name, true).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("Lock-pass-1")).await.unwrap(), Login::Accepted);
    user.drop_user().await;
}

async fn sessions_are_counted(
    adapter: &impl PasswordTarget,
    flavor: Flavor,
    url_for: impl Fn(&str, &str) -> String,
) {
    use sqlx::Connection as _;
    let user = flavor.create_user("t40_sessions", "Sess-pass-1", false).await;
    assert_eq!(adapter.open_sessions(&user.name).await.unwrap(), 0);
    let url = url_for(&user.name, "Sess-pass-1");
    let session: Box<dyn std::any::Any> = match flavor {
        Flavor::Postgres => Box::new(sqlx::PgConnection::connect(&url).await.unwrap()),
        Flavor::MariaDb => Box::new(sqlx::MySqlConnection::connect(&url).await.unwrap()),
    };
    assert_eq!(adapter.open_sessions(&user.name).await.unwrap(), 1);
    drop(session);
    wait_for("the session to end", Duration::from_secs(10), || async {
        (adapter.open_sessions(&user.name).await.unwrap() == 0).then_some(())
    })
    .await;
    user.drop_user().await;
}

async fn privileges_compare(adapter: &impl PasswordTarget, flavor: Flavor) {
    let a = flavor.create_user("t40_priv_a", "Priv-pass-1", true).await;
    let b = flavor.create_user("t40_priv_b", "Priv-pass-1", true).await;
    let c = flavor.create_user("t40_priv_c", "Priv-pass-1", false).await;
    let pa = adapter.privileges(&a.name).await.unwrap();
    let pb = adapter.privileges(&b.name).await.unwrap();
    let pc = adapter.privileges(&c.name).await.unwrap();
    assert!(!pa.is_empty());
    assert_eq!(pa, pb);
    assert_ne!(pa, pc, "{pa:?} vs {pc:?}");
    assert!(pa.iter().all(|line| !line.contains(&a.name)), "{pa:?}");
    assert!(pa.iter().all(|line| !line.contains("PASSWORD")), "{pa:?}");
    for user in [a, b, c] {
        user.drop_user().await;
    }
}

fn url_for(flavor: Flavor) -> impl Fn(&str, &str) -> String {
    move |user, password| {
        let url = dsops_tests::services::with_credentials(&flavor.service().url(), user, password);
        match flavor {
            Flavor::Postgres => dsops_tests::services::with_database(&url, "postgres"),
            Flavor::MariaDb => dsops_tests::services::with_database(&url, ""),
        }
    }
}

#[tokio::test]
async fn postgres_adapter_conforms() {
    let flavor = Flavor::Postgres;
    let adapter = PostgresAdapter::new(flavor.target());
    changes_take_effect(&adapter, flavor).await;
    hostile_values_are_harmless(&adapter, flavor).await;
    failures_are_classed(PostgresAdapter::new, flavor).await;
    login_can_be_disabled(&adapter, flavor).await;
    sessions_are_counted(&adapter, flavor, url_for(flavor)).await;
    privileges_compare(&adapter, flavor).await;
}

#[tokio::test]
async fn mariadb_adapter_conforms() {
    let flavor = Flavor::MariaDb;
    let adapter = MySqlAdapter::new(flavor.target());
    changes_take_effect(&adapter, flavor).await;
    hostile_values_are_harmless(&adapter, flavor).await;
    failures_are_classed(MySqlAdapter::new, flavor).await;
    login_can_be_disabled(&adapter, flavor).await;
    sessions_are_counted(&adapter, flavor, url_for(flavor)).await;
    privileges_compare(&adapter, flavor).await;
}
