//! The test servers are real and enforce passwords: a server that trusted every connection would
//! let every later rotation test pass without proving anything.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::redis::{Connection, Reply, parse_url};
use dsops_tests::services::{with_credentials, with_database};
use dsops_tests::{Service, unique_name};
// Names and passwords in these statements come from this test (unique_name), not from input.
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, PgConnection};

#[tokio::test]
async fn postgres_enforces_scram_passwords() {
    let admin_url = Service::Postgres.url();
    let mut admin = PgConnection::connect(&admin_url).await.expect("admin login");
    let method: String = sqlx::query_scalar("select current_setting('password_encryption')")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(method, "scram-sha-256");

    // A wrong admin password is refused (28P01: invalid_password).
    let error = PgConnection::connect(&with_credentials(&admin_url, "postgres", "wrong"))
        .await
        .unwrap_err();
    let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("28P01"), "{error}");

    // A role and a database of this test's own.
    let role = unique_name("t01_role");
    let database = unique_name("t01_db");
    let password = "Pw-with-'quote-and-\\backslash";
    let literal = password.replace('\'', "''");
    sqlx::query(AssertSqlSafe(format!("create role \"{role}\" login password '{literal}'")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("create database \"{database}\" owner \"{role}\"")))
        .execute(&mut admin)
        .await
        .unwrap();

    let url = with_database(&with_credentials(&admin_url, &role, &urlencode(password)), &database);
    let mut user = PgConnection::connect(&url).await.expect("login with the role's password");
    let me: String = sqlx::query_scalar("select current_user").fetch_one(&mut user).await.unwrap();
    assert_eq!(me, role);
    user.close().await.unwrap();
    let refused = PgConnection::connect(&with_database(
        &with_credentials(&admin_url, &role, "nope"),
        &database,
    ))
    .await;
    assert!(refused.is_err(), "a wrong password must be refused");

    sqlx::query(AssertSqlSafe(format!("drop database \"{database}\" with (force)")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("drop role \"{role}\""))).execute(&mut admin).await.unwrap();
}

#[tokio::test]
async fn mariadb_enforces_passwords() {
    let admin_url = Service::MariaDb.url();
    let mut admin = MySqlConnection::connect(&admin_url).await.expect("admin login");
    let error = MySqlConnection::connect(&with_credentials(&admin_url, "dsops_admin", "wrong"))
        .await
        .unwrap_err();
    let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    // 28000: access denied.
    assert_eq!(code.as_deref(), Some("28000"), "{error}");
    let anonymous = MySqlConnection::connect(&with_credentials(&admin_url, "nobody", "")).await;
    assert!(anonymous.is_err(), "anonymous users were removed");

    let user = unique_name("t01");
    let database = unique_name("t01_db");
    sqlx::query(AssertSqlSafe(format!("create user '{user}'@'%' identified by 'first-Pass'")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("create database `{database}`")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("grant all on `{database}`.* to '{user}'@'%'")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = with_database(&with_credentials(&admin_url, &user, "first-Pass"), &database);
    let mut conn = MySqlConnection::connect(&url).await.expect("login with the new user");
    let current: String = sqlx::query_scalar("select substring_index(current_user(), '@', 1)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current, user);
    conn.close().await.unwrap();
    assert!(
        MySqlConnection::connect(&with_database(
            &with_credentials(&admin_url, &user, "nope"),
            &database
        ))
        .await
        .is_err()
    );

    sqlx::query(AssertSqlSafe(format!("drop database `{database}`")))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!("drop user '{user}'@'%'")))
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_requires_a_password() {
    let (address, password) = parse_url(&Service::Redis.url());
    let password = password.expect("the test Redis has a password");
    let mut conn = Connection::connect(&address).await.unwrap();
    match conn.command(&["GET", "x"]).await.unwrap() {
        Reply::Error(message) => assert!(message.starts_with("NOAUTH"), "{message}"),
        other => panic!("unauthenticated command was answered: {other:?}"),
    }
    match conn.command(&["AUTH", "wrong-password"]).await.unwrap() {
        Reply::Error(message) => {
            assert!(message.contains("WRONGPASS") || message.contains("invalid"), "{message}")
        }
        other => panic!("a wrong password was accepted: {other:?}"),
    }
    assert_eq!(conn.command(&["AUTH", &password]).await.unwrap(), Reply::Status("OK".into()));
    let key = unique_name("t01_key");
    assert_eq!(conn.command(&["SET", &key, "v"]).await.unwrap(), Reply::Status("OK".into()));
    assert_eq!(conn.command(&["GET", &key]).await.unwrap(), Reply::Bulk(Some(b"v".to_vec())));
    assert_eq!(conn.command(&["DEL", &key]).await.unwrap(), Reply::Integer(1));
}

/// Percent-encodes a password for a URL.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
