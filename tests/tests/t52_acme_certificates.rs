//! `acme-certificate` against a real ACME CA (Debian's pebble, which validates every challenge):
//! `http-01` answered by the agent's own listener and `dns-01` through a `dns01_command` that
//! sets the TXT record in pebble's DNS server. The account is created once and its key kept in
//! the agent's store; the second rotation reuses it. OpenSSL's `verify` checks what was issued.
//! An order whose challenge cannot be validated fails, the run rolls back, and the current
//! certificate stays. Renewal information (ARI) and a rate limit's `Retry-After`, which pebble
//! 2.4 does not offer, come from a **simulator** in front of pebble (`dsops_tests::acme_front`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::path::Path;
use std::process::Command;

use std::time::Duration;

use dsops_agent::store::Label;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::acme_front::{self, Mode};
use dsops_tests::pebble::Pebble;
use dsops_tests::rotation::{Project, rotate, rotate_request, tree_contains};
use dsops_tests::{RunView, StepView, wait_for};

const DOMAIN: &str = "api.dsops-test.example";

fn project(pebble: &Pebble, challenge: &str) -> Project {
    project_at(pebble, &pebble.directory, challenge)
}

/// A project whose ACME directory is `directory` (pebble's, or a front of it).
fn project_at(pebble: &Pebble, directory: &str, challenge: &str) -> Project {
    Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  acme:\n    type: acme-certificate\n    directory: {}\n    account_store: store://local/acme/account\n    domains: [{DOMAIN}]\n    contact: mailto:ops@dsops-test.example\n    ca_bundle: {}\n{challenge}envs:\n  dev:\n    TLS:\n      from: {{ store: \"store://local/tls/api\", service: \"svc://acme?kind=tls_certificate\" }}\n      rotation: {{ strategy: overlap }}\n",
        directory,
        pebble.ca_bundle.display()
    ))
}

fn http01(pebble: &Pebble) -> String {
    format!("    challenge: http-01\n    http01_listen: 127.0.0.1:{}\n", pebble.http_port)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The ARI id of a PEM certificate (RFC 9773 §4.1): base64url of the authority key identifier
/// and of the serial's DER bytes, joined by a dot.
fn ari_id(pem: &str) -> String {
    use base64::Engine as _;
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = der.parse_x509().unwrap();
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}", b64.encode(aki), b64.encode(cert.raw_serial()))
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
    assert!(stage.detail.contains("the CA offers no renewal information"), "{stage:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cas_renewal_window_sets_when_it_renews_ari_simulator() {
    let pebble = Pebble::start();
    let now = time::OffsetDateTime::now_utc();
    let (start, end) = (now + time::Duration::days(10), now + time::Duration::days(11));
    let front =
        acme_front::start(&pebble, Mode::Renewal { start: rfc3339(start), end: rfc3339(end) })
            .await;
    let project = project_at(&pebble, &front.directory, &http01(&pebble));
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}\n{}", pebble.log());
    let stage = run.steps.iter().find(|s| s.step_name() == "stage").unwrap();
    assert!(stage.detail.contains("renewal window from the CA (ARI)"), "{stage:?}");
    let cert = project.read("tls/api", "cert", Label::Current).unwrap();
    assert_eq!(*front.asked.lock().unwrap(), vec![ari_id(&cert)], "asked about the new one");
    // The renewal time is a point in the window, kept with the secret; status shows it as due.
    let renew_at = embedded
        .control()
        .read_local(|s| s.secrets.get("dev/TLS").and_then(|r| r.renew_at_ms))
        .await
        .expect("a renewal time");
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp() * 1000) as u64;
    assert!((ms(start)..=ms(end)).contains(&renew_at), "{renew_at} not in the window");
    let status = embedded
        .admin()
        .rotation_status(
            embedded
                .request(wire::RotationStatusRequest { env: "dev".into(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    let due = status.secrets[0].next_due.unwrap();
    assert_eq!(due.seconds as u64 * 1000, renew_at - renew_at % 1000, "{due:?}");
    embedded.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_waits_as_long_as_the_ca_asked_simulator() {
    let pebble = Pebble::start();
    let front = acme_front::start(&pebble, Mode::RateLimited { retry_after: 300 }).await;
    let project = project_at(&pebble, &front.directory, &http01(&pebble));
    let embedded = project.open().await;
    let started = std::time::SystemTime::now();
    let response = embedded
        .admin()
        .rotate(embedded.request(rotate_request("dev", "TLS")))
        .await
        .unwrap()
        .into_inner();
    let run_id = response.runs[0].run_id.clone();
    let run = wait_for("the refused order", Duration::from_secs(60), || async {
        let request = wire::GetRunsRequest { run_ids: vec![run_id.clone()], with_steps: true };
        let runs = embedded.admin().get_runs(embedded.request(request)).await.ok()?.into_inner();
        runs.runs.into_iter().next().filter(|r| !r.steps.is_empty())
    })
    .await;
    let refused = &run.steps[0];
    assert!(refused.detail.contains("rateLimited"), "{refused:?}");
    assert!(refused.detail.contains("asked to wait 300s"), "{refused:?}");
    assert_eq!(run.attempt, 2, "{run:?}");
    let not_before = run.not_before.expect("a wait");
    let waited = not_before.seconds
        - started.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((295..=330).contains(&waited), "waits the CA's 300 s, not the 2 s backoff: {waited}");
    // Well past the control plane's own backoff, the CA has not been asked again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(*front.asked.lock().unwrap(), vec!["new-order".to_owned()]);
    assert!(project.read("tls/api", "cert", Label::Pending).is_none(), "nothing staged");
    embedded.close().await;
}
