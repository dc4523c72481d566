//! Every adapter the agent registers (`dsops_agent::adapter::SERVICE_TYPES`) passes the same
//! suite against a real server, through the trait object the strategies use: changes take effect
//! and only the new password logs in, a change repeated is harmless (a retried step), values
//! that would break a quoted statement are harmless, failures are classed (not applied /
//! retryable) and name no value, a server that never answers fails within the adapter's
//! timeout, a cancelled call leaves the adapter usable and exactly one password working, and the
//! retire helpers work. (The indeterminate class, a statement the server may still run, is
//! exercised end to end by t48 on both servers.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::{DatabaseTarget, ErrorClass, Login, SERVICE_TYPES, Target};
use dsops_tests::databases::Flavor;
use dsops_tests::wait_for;

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.to_owned())
}

async fn changes_take_effect(adapter: &dyn Target, flavor: Flavor) {
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

async fn hostile_values_are_harmless(adapter: &dyn Target, flavor: Flavor) {
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

async fn failures_are_classed(service_type: &str, flavor: Flavor) {
    let make = |target| dsops_agent::adapter::open(service_type, target).unwrap();
    let adapter = make(flavor.target());
    let missing = dsops_tests::unique_name("t40_missing");
    let error = adapter.set_password(&missing, &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::NotApplied, "{error}");
    assert!(!error.message.contains("Whatever"), "{error}");
    assert!(!adapter.user_exists(&missing).await.unwrap());
    assert_eq!(adapter.login(&missing, &value("x")).await.unwrap(), Login::Refused);

    // A server that is not there: nothing was sent, so retrying is safe. The port was free a
    // moment ago on an address nothing else here listens on (the silent server below uses
    // another one), so the connection is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = make(DatabaseTarget {
        host: "127.0.0.3".to_owned(),
        port: closed,
        timeout: Duration::from_secs(3),
        ..flavor.target()
    });
    let error = unreachable.set_password("x", &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");
    assert!(!error.message.contains("Whatever"), "{error}");
    let error = unreachable.login("x", &value("Whatever-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");

    // A server that accepts the connection and never answers: the call ends within the
    // adapter's timeout (a step never hangs), as a failure that names no value.
    let silent = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(4).collect();
        std::thread::sleep(Duration::from_secs(8));
        drop(held);
    });
    let timeout = Duration::from_secs(1);
    let stuck =
        make(DatabaseTarget { host: "127.0.0.2".to_owned(), port, timeout, ..flavor.target() });
    let started = std::time::Instant::now();
    let error = stuck.set_password("x", &value("Whatever-1")).await.unwrap_err();
    assert!(started.elapsed() < timeout * 4, "took {:?}", started.elapsed());
    assert_ne!(error.class, ErrorClass::NotApplied, "nothing proves it was not applied: {error}");
    assert!(!error.message.contains("Whatever"), "{error}");
    drop(hold);
}

async fn login_can_be_disabled(adapter: &dyn Target, flavor: Flavor) {
    let user = flavor.create_user("t40_lock", "Lock-pass-1", false).await;
    adapter.set_login_enabled(&user.name, false).await.unwrap();
    adapter.set_login_enabled(&user.name, false).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("Lock-pass-1")).await.unwrap(), Login::Refused);
    adapter.set_login_enabled(&user.name, true).await.unwrap();
    assert_eq!(adapter.login(&user.name, &value("Lock-pass-1")).await.unwrap(), Login::Accepted);
    user.drop_user().await;
}

async fn sessions_are_counted(adapter: &dyn Target, flavor: Flavor) {
    let user = flavor.create_user("t40_sessions", "Sess-pass-1", false).await;
    assert_eq!(adapter.open_sessions(&user.name).await.unwrap(), 0);
    let session = flavor.session(&user.name, "Sess-pass-1").await;
    assert_eq!(adapter.open_sessions(&user.name).await.unwrap(), 1);
    // Every session is at least zero seconds old, and none of them an hour.
    assert_eq!(adapter.sessions_older_than(&user.name, Duration::ZERO).await.unwrap(), 1);
    if flavor == Flavor::Redis {
        assert_eq!(
            adapter.sessions_older_than(&user.name, Duration::from_secs(3600)).await.unwrap(),
            0
        );
    }
    drop(session);
    wait_for("the session to end", Duration::from_secs(10), || async {
        (adapter.open_sessions(&user.name).await.unwrap() == 0).then_some(())
    })
    .await;
    user.drop_user().await;
}

async fn privileges_compare(adapter: &dyn Target, flavor: Flavor) {
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

/// A call cancelled part way (its future dropped, as when a step is abandoned) leaves the adapter
/// usable. A statement already sent may still land on the server a moment later, so the user
/// settles (within seconds) on exactly one working password, the old or the new one, never none;
/// and the next change takes effect.
async fn cancelled_calls_leave_the_adapter_usable(adapter: &dyn Target, flavor: Flavor) {
    let user = flavor.create_user("t40_cancel", "Before-pass-1", false).await;
    for wait in [0, 1, 5, 20] {
        let _ = tokio::time::timeout(
            Duration::from_millis(wait),
            adapter.set_password(&user.name, &value("After-pass-2")),
        )
        .await;
        // Settled: the same single working password seen twice, 200 ms apart.
        let mut last = (Login::Refused, Login::Refused);
        let settled = tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = None;
            loop {
                let old = adapter.login(&user.name, &value("Before-pass-1")).await.unwrap();
                let new = adapter.login(&user.name, &value("After-pass-2")).await.unwrap();
                last = (old, new);
                let one = (old == Login::Accepted) != (new == Login::Accepted);
                if one && seen == Some(last) {
                    return;
                }
                seen = one.then_some(last);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        assert!(settled.is_ok(), "after a call cancelled at {wait} ms: old/new {last:?}");
        // The adapter still works: back to the start for the next round.
        adapter.set_password(&user.name, &value("Before-pass-1")).await.unwrap();
        assert_eq!(
            adapter.login(&user.name, &value("Before-pass-1")).await.unwrap(),
            Login::Accepted
        );
    }
    user.drop_user().await;
}

/// Targets whose users hold two passwords at once (`OVERLAP_TYPES`): a second one is added
/// beside the first, both log in, removing one leaves the other, and both calls are idempotent.
/// Other targets refuse a second password as not applied.
async fn second_passwords(adapter: &dyn Target, flavor: Flavor, service_type: &str) {
    let user = flavor.create_user("t40_overlap", "First-pass-1", false).await;
    let (first, second) = (value("First-pass-1"), value("Second-pass-2"));
    if !dsops_agent::adapter::OVERLAP_TYPES.contains(&service_type) {
        let error = adapter.add_password(&user.name, &second).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::NotApplied, "{error}");
        assert_eq!(adapter.login(&user.name, &second).await.unwrap(), Login::Refused);
        user.drop_user().await;
        return;
    }
    assert_eq!(adapter.password_count(&user.name).await.unwrap(), 1);
    for _ in 0..2 {
        adapter.add_password(&user.name, &second).await.unwrap();
    }
    assert_eq!(adapter.password_count(&user.name).await.unwrap(), 2);
    assert_eq!(adapter.login(&user.name, &first).await.unwrap(), Login::Accepted);
    assert_eq!(adapter.login(&user.name, &second).await.unwrap(), Login::Accepted);
    assert_eq!(flavor.login_with_client(&user.name, "Second-pass-2"), Ok(true));
    for _ in 0..2 {
        adapter.remove_password(&user.name, &first).await.unwrap();
    }
    assert_eq!(adapter.password_count(&user.name).await.unwrap(), 1);
    assert_eq!(adapter.login(&user.name, &first).await.unwrap(), Login::Refused);
    assert_eq!(flavor.login_with_client(&user.name, "First-pass-1"), Ok(false));
    assert_eq!(adapter.login(&user.name, &second).await.unwrap(), Login::Accepted);
    let missing = dsops_tests::unique_name("t40_missing");
    let error = adapter.add_password(&missing, &second).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::NotApplied, "{error}");
    assert!(!adapter.user_exists(&missing).await.unwrap(), "adding a password created a user");
    user.drop_user().await;
}

/// The suite, through the registered adapter of `service_type`.
async fn conforms(service_type: &str, flavor: Flavor) {
    let adapter = dsops_agent::adapter::open(service_type, flavor.target()).unwrap();
    let adapter = adapter.as_ref();
    changes_take_effect(adapter, flavor).await;
    hostile_values_are_harmless(adapter, flavor).await;
    failures_are_classed(service_type, flavor).await;
    login_can_be_disabled(adapter, flavor).await;
    sessions_are_counted(adapter, flavor).await;
    privileges_compare(adapter, flavor).await;
    cancelled_calls_leave_the_adapter_usable(adapter, flavor).await;
    second_passwords(adapter, flavor, service_type).await;
}

/// The server each registered service type is tested against. A new adapter without a server
/// here fails `every_registered_adapter_is_covered`.
fn flavor_of(service_type: &str) -> Option<Flavor> {
    match service_type {
        "postgresql" => Some(Flavor::Postgres),
        "mysql" | "mariadb" => Some(Flavor::MariaDb),
        "redis" => Some(Flavor::Redis),
        _ => None,
    }
}

#[test]
fn every_registered_adapter_is_covered() {
    for (service_type, _) in SERVICE_TYPES {
        assert!(flavor_of(service_type).is_some(), "no conformance server for {service_type}");
    }
}

#[tokio::test]
async fn postgresql_adapter_conforms() {
    conforms("postgresql", flavor_of("postgresql").unwrap()).await;
}

#[tokio::test]
async fn mysql_adapter_conforms() {
    conforms("mysql", flavor_of("mysql").unwrap()).await;
}

#[tokio::test]
async fn mariadb_adapter_conforms() {
    conforms("mariadb", flavor_of("mariadb").unwrap()).await;
}

#[tokio::test]
async fn redis_adapter_conforms() {
    conforms("redis", flavor_of("redis").unwrap()).await;
}

/// A Redis health command runs only when the server flags it read-only; a write is refused
/// without being sent.
#[tokio::test]
async fn redis_probes_run_read_only_commands_only() {
    let adapter = dsops_agent::adapter::open("redis", Flavor::Redis.target()).unwrap();
    assert_eq!(adapter.probe("PING").await.unwrap().as_deref(), Some("PONG"));
    let key = dsops_tests::unique_name("t40_probe");
    assert_eq!(adapter.probe(&format!("GET {key}")).await.unwrap(), None);
    let error = adapter.probe(&format!("SET {key} written")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::NotApplied, "{error}");
    assert!(error.message.contains("not a read-only command"), "{error}");
    assert_eq!(adapter.probe(&format!("EXISTS {key}")).await.unwrap().as_deref(), Some("0"));
}

/// The TLS mode the configuration names is the one the adapter uses: the test servers speak no
/// TLS, so a mode that requires it fails to connect (retryable, nothing sent), and `disable`
/// logs in. (Before, `sslmode`/`tls` validated and the driver's default was used.)
#[tokio::test]
async fn the_configured_tls_mode_is_honoured() {
    for (service_type, flavor, off, required) in [
        ("postgresql", Flavor::Postgres, "disable", "require"),
        ("mysql", Flavor::MariaDb, "disabled", "required"),
    ] {
        let user = flavor.create_user("t40_tls", "Tls-pass-1", false).await;
        let with = |mode: &str| {
            dsops_agent::adapter::open(
                service_type,
                DatabaseTarget { tls_mode: Some(mode.to_owned()), ..flavor.target() },
            )
            .unwrap()
        };
        assert_eq!(
            with(off).login(&user.name, &value("Tls-pass-1")).await.unwrap(),
            Login::Accepted
        );
        let error = with(required).login(&user.name, &value("Tls-pass-1")).await.unwrap_err();
        assert_eq!(error.class, ErrorClass::Retryable, "{service_type}: {error}");
        user.drop_user().await;
    }
}

/// A CA and a server certificate for 127.0.0.1 from it, written to `dir` as `<name>-ca.pem`,
/// `<name>.pem`, `<name>.key`.
fn tls_files(dir: &std::path::Path, name: &str) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{name}-ca.pem")), ca.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), leaf.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// `tls: true` on a Redis service: the adapter speaks TLS to a redis-server that accepts only
/// TLS, trusting the service's `ca_file`; a server whose certificate another CA signed is not
/// trusted (retryable: nothing was sent).
#[tokio::test]
async fn redis_over_tls_trusts_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    tls_files(dir.path(), "server");
    tls_files(dir.path(), "other");
    let address = dsops_tests::processes::free_address();
    let port: u16 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut server = std::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--tls-cert-file", &path("server.pem"), "--tls-key-file", &path("server.key")])
        .args(["--tls-ca-cert-file", &path("server-ca.pem"), "--tls-auth-clients", "no"])
        .args(["--requirepass", "Tls-admin-pass-1", "--save", "", "--appendonly", "no"])
        .args(["--dir", &dir.path().display().to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_for("redis-server over TLS", Duration::from_secs(15), || async {
        std::net::TcpStream::connect(&address).ok()
    })
    .await;
    let target = DatabaseTarget {
        host: "127.0.0.1".to_owned(),
        port,
        database: None,
        admin_user: "default".to_owned(),
        admin_password: value("Tls-admin-pass-1"),
        timeout: Duration::from_secs(10),
        max_connections: 2,
        tls_mode: Some("tls".to_owned()),
        ca_file: Some(dir.path().join("server-ca.pem")),
    };
    let adapter = dsops_agent::adapter::open("redis", target.clone()).unwrap();
    assert!(adapter.user_exists("default").await.unwrap());
    assert_eq!(
        adapter.login("default", &value("Tls-admin-pass-1")).await.unwrap(),
        Login::Accepted
    );
    assert_eq!(adapter.login("default", &value("wrong")).await.unwrap(), Login::Refused);
    let untrusted = dsops_agent::adapter::open(
        "redis",
        DatabaseTarget { ca_file: Some(dir.path().join("other-ca.pem")), ..target.clone() },
    )
    .unwrap();
    let error = untrusted.login("default", &value("Tls-admin-pass-1")).await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");
    let plain =
        dsops_agent::adapter::open("redis", DatabaseTarget { tls_mode: None, ..target }).unwrap();
    assert!(plain.login("default", &value("Tls-admin-pass-1")).await.is_err(), "no plain TCP");
    let _ = server.kill();
    let _ = server.wait();
}
