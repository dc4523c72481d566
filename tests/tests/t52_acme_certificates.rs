//! `acme-certificate` against a real ACME CA (Debian's pebble, which validates every challenge):
//! `http-01` answered by the agent's own listener and `dns-01` through a `dns01_command` that
//! sets the TXT record in pebble's DNS server. The account is created once and its key kept in
//! the agent's store; the second rotation reuses it. OpenSSL's `verify` checks what was issued.
//! An order whose challenge cannot be validated fails, the run rolls back, and the current
//! certificate stays.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::path::Path;
use std::process::Command;

use dsops_agent::store::Label;
use dsops_tests::pebble::Pebble;
use dsops_tests::rotation::{Project, rotate, tree_contains};
use dsops_tests::{RunView, StepView};

const DOMAIN: &str = "api.dsops-test.example";

fn project(pebble: &Pebble, challenge: &str) -> Project {
    Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  acme:\n    type: acme-certificate\n    directory: {}\n    account_store: store://local/acme/account\n    domains: [{DOMAIN}]\n    contact: mailto:ops@dsops-test.example\n    ca_bundle: {}\n{challenge}envs:\n  dev:\n    TLS:\n      from: {{ store: \"store://local/tls/api\", service: \"svc://acme?kind=tls_certificate\" }}\n      rotation: {{ strategy: overlap }}\n",
        pebble.directory,
        pebble.ca_bundle.display()
    ))
}

/// `openssl verify` of the leaf against its issuing chain (the chain's top as trust anchor).
fn openssl_verifies(dir: &Path, cert: &str, chain: &str) -> Result<(), String> {
    std::fs::write(dir.join("leaf.pem"), cert).unwrap();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let output = Command::new("openssl")
        .args(["verify", "-partial_chain", "-purpose", "sslserver", "-verify_hostname", DOMAIN])
        .arg("-CAfile")
        .arg(dir.join("chain.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_and_renews_with_one_account() {
    let pebble = Pebble::start();
    let work = tempfile::tempdir().unwrap();
    let challenge =
        format!("    challenge: http-01\n    http01_listen: 127.0.0.1:{}\n", pebble.http_port);
    let project = project(&pebble, &challenge);
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}\n{}", pebble.log());
    let stage = run.steps.iter().find(|s| s.step_name() == "stage").unwrap();
    assert!(stage.detail.contains(&format!("certificate for {DOMAIN}")), "{stage:?}");
    let cert = project.read("tls/api", "cert", Label::Current).unwrap();
    let chain = project.read("tls/api", "chain", Label::Current).unwrap();
    openssl_verifies(work.path(), &cert, &chain).unwrap();
    let account = project.read("acme/account", "credentials", Label::Current).unwrap();
    assert!(account.contains("key_pkcs8"), "the account key is kept in the agent's store");

    let second = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let newer = project.read("tls/api", "cert", Label::Current).unwrap();
    assert_ne!(newer, cert);
    assert_eq!(
        project.read("acme/account", "credentials", Label::Current).as_deref(),
        Some(account.as_str()),
        "the second order used the same account"
    );
    let retire = second.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("the previous certificate"), "{retire:?}");
    embedded.close().await;
    // The account key and the certificate key are nowhere in the control plane's files.
    let key = project.read("tls/api", "key", Label::Current).unwrap();
    for secret in [key.lines().nth(1).unwrap(), "key_pkcs8"] {
        assert!(tree_contains(&project.state.join("cluster"), secret.as_bytes()).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_sets_the_record_through_the_command() {
    let pebble = Pebble::start();
    let work = tempfile::tempdir().unwrap();
    // The command a user would write for their DNS provider; here it calls the test DNS
    // server's management API.
    let script = format!(
        "import json, os, urllib.request\naction = os.environ['DSOPS_ACME_ACTION']\nbody = {{'host': os.environ['DSOPS_ACME_NAME']}}\nif action == 'set':\n    body['value'] = os.environ['DSOPS_ACME_VALUE']\nreq = urllib.request.Request('{}/' + action + '-txt', data=json.dumps(body).encode(), method='POST')\nurllib.request.urlopen(req, timeout=10).read()\n",
        pebble.management
    );
    std::fs::write(work.path().join("dns.py"), script).unwrap();
    let challenge = format!(
        "    challenge: dns-01\n    dns01_command: [python3, {}]\n",
        work.path().join("dns.py").display()
    );
    let project = project(&pebble, &challenge);
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}\n{}", pebble.log());
    let cert = project.read("tls/api", "cert", Label::Current).unwrap();
    let chain = project.read("tls/api", "chain", Label::Current).unwrap();
    openssl_verifies(work.path(), &cert, &chain).unwrap();
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_keeps_the_current_certificate() {
    let pebble = Pebble::start();
    // Nothing answers where pebble validates: the agent listens on another port.
    let elsewhere = dsops_tests::processes::free_address();
    let challenge = format!("    challenge: http-01\n    http01_listen: {elsewhere}\n");
    let project = project(&pebble, &challenge);
    project.put(
        "tls/api",
        "cert",
        "-----BEGIN CERTIFICATE-----\ncurrent\n-----END CERTIFICATE-----\n",
    );
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    assert!(run.detail.contains("waiting for validation"), "{}", run.detail);
    assert!(
        run.detail.contains("acme-challenge"),
        "pebble says what it could not reach: {}",
        run.detail
    );
    assert_eq!(
        project.read("tls/api", "cert", Label::Current).as_deref(),
        Some("-----BEGIN CERTIFICATE-----\ncurrent\n-----END CERTIFICATE-----\n")
    );
    assert!(project.read("tls/api", "cert", Label::Pending).is_none());
    embedded.close().await;
}
