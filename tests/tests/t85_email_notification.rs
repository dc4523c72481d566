//! Email notifications against a real SMTP server, aiosmtpd (PyPI, installed by the test
//! script), with STARTTLS required and AUTH accepted only over TLS: the agent's delivery
//! authenticates, upgrades the connection (its certificate checked against the channel's CA
//! file), and the message arrives with the delivery id as its Message-ID; a wrong password is a
//! final refusal (dead letter), a server that is not there is worth another try.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dsops_agent::notify::{ChannelSpec, Delivered, EmailSpec, Notification, deliver};
use dsops_agent::secret::SecretValue;

struct Receiver {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts aiosmtpd on a free port with a certificate for 127.0.0.1 from a CA of its own.
fn receiver(user: &str, password: &str) -> Receiver {
    let python = std::env::var("DSOPS_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("DSOPS_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs aiosmtpd")
    });
    let dir = tempfile::tempdir().unwrap();
    let tls = dsops_tests::tls::ca_and_server(&["127.0.0.1"]);
    let (cert, key_file, ca_file, out) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
        dir.path().join("mail.jsonl"),
    );
    std::fs::write(&cert, &tls.cert_pem).unwrap();
    std::fs::write(&key_file, &tls.key_pem).unwrap();
    std::fs::write(&ca_file, &tls.ca_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/smtp_receiver.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .arg(&cert)
        .arg(&key_file)
        .args([user, password])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
    Receiver { child, port, out, ca_file, _dir: dir }
}

fn notification(id: &str) -> Notification {
    Notification {
        id: id.into(),
        event_id: "evt-9".into(),
        action: "run.quarantined".into(),
        subject: "prod/DB_PASSWORD".into(),
        detail: "run r9 ended Quarantined: login failed".into(),
        actor: "agent:a1".into(),
        at_ms: 1_700_000_000_000,
        address: Some("dba@example.com".into()),
    }
}

fn spec(receiver: &Receiver, user: Option<&str>) -> ChannelSpec {
    ChannelSpec::Email(EmailSpec {
        host: "127.0.0.1".into(),
        port: receiver.port,
        from: "dsops@example.com".into(),
        username: user.map(str::to_owned),
        ca_file: Some(receiver.ca_file.clone()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_with_authentication_to_a_real_smtp_server() {
    let smtp = receiver("dsops", "s3cret-smtp");
    let delivered = deliver(
        &spec(&smtp, Some("dsops")),
        &notification("evt-9.1"),
        &SecretValue::new("s3cret-smtp".into()),
    )
    .await;
    assert!(matches!(delivered, Delivered::Yes(_)), "{delivered:?}");
    let mail = std::fs::read_to_string(&smtp.out).unwrap();
    let received: serde_json::Value = serde_json::from_str(mail.lines().next().unwrap()).unwrap();
    assert_eq!(received["from"], "dsops@example.com");
    assert_eq!(received["to"][0], "dba@example.com");
    let data = received["data"].as_str().unwrap();
    assert!(data.contains("Message-ID: <evt-9.1@dsops>"), "{data}");
    assert!(data.contains("Subject: [dsops] prod/DB_PASSWORD run.quarantined"), "{data}");
    assert!(data.contains("dsops rotation history --env prod --key DB_PASSWORD"), "{data}");
    assert!(!data.contains("s3cret-smtp"), "the password is not in the message");

    // A wrong password is final; no authentication where the server requires it too.
    let wrong = deliver(
        &spec(&smtp, Some("dsops")),
        &notification("evt-9.2"),
        &SecretValue::new("nope".into()),
    )
    .await;
    assert!(matches!(wrong, Delivered::Refused(_)), "{wrong:?}");
    let anonymous =
        deliver(&spec(&smtp, None), &notification("evt-9.3"), &SecretValue::new(String::new()))
            .await;
    assert!(!matches!(anonymous, Delivered::Yes(_)), "{anonymous:?}");
    assert_eq!(std::fs::read_to_string(&smtp.out).unwrap().lines().count(), 1);

    // A certificate from another CA is refused: nothing goes out in clear or to an impostor.
    let other = receiver("dsops", "s3cret-smtp");
    let mut mismatched = spec(&smtp, Some("dsops"));
    if let ChannelSpec::Email(spec) = &mut mismatched {
        spec.ca_file = Some(other.ca_file.clone());
    }
    let impostor =
        deliver(&mismatched, &notification("evt-9.4"), &SecretValue::new("s3cret-smtp".into()))
            .await;
    assert!(!matches!(impostor, Delivered::Yes(_)), "{impostor:?}");

    // Nobody listening: another try later.
    let port = smtp.port;
    drop(smtp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = ChannelSpec::Email(EmailSpec {
        host: "127.0.0.1".into(),
        port,
        from: "dsops@example.com".into(),
        username: None,
        ca_file: Some(other.ca_file.clone()),
    });
    let later = deliver(&gone, &notification("evt-9.5"), &SecretValue::new(String::new())).await;
    assert!(matches!(later, Delivered::Retry(_)), "{later:?}");
}
