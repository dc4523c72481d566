//! `internal-ca-certificate` through the embedded default: the agent issues a leaf and key from
//! the CA in its store, stores `cert`, `key` and `chain`, verifies them by TLS handshakes (in
//! memory, and with the configured endpoint, here `openssl s_server`), and on promotion the old
//! certificate stays valid. OpenSSL's own `verify` (code nobody here wrote) checks the chain, the
//! names and the key. An endpoint that presents a certificate of another CA fails verify and the
//! run rolls back, leaving the current certificate in place. The CA key never reaches the
//! control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dsops_agent::store::Label;
use dsops_tests::rotation::{Project, rotate, tree_contains};
use dsops_tests::{RunView, StepView};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA: its certificate and key (PEM).
fn new_ca(name: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A server certificate for `name` from the CA (cert PEM, key PEM).
fn leaf(ca: &(String, String), name: &str) -> (String, String) {
    let ca_key = KeyPair::from_pem(&ca.1).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.0, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

/// `openssl s_server` on a free port presenting `cert`; killed on drop.
struct Endpoint {
    child: Child,
    address: String,
}

impl Endpoint {
    fn start(dir: &Path, cert: &str, key: &str) -> Endpoint {
        Endpoint::start_at(dir, cert, key, dsops_tests::processes::free_address())
    }

    fn start_at(dir: &Path, cert: &str, key: &str, address: String) -> Endpoint {
        std::fs::write(dir.join("server.pem"), cert).unwrap();
        std::fs::write(dir.join("server.key"), key).unwrap();
        let port = address.rsplit_once(':').unwrap().1.to_owned();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-naccept", "1000", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(dir.join("server.pem"))
            .arg("-key")
            .arg(dir.join("server.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let endpoint = Endpoint { child, address };
        let wait = std::time::Instant::now();
        while std::net::TcpStream::connect(&endpoint.address).is_err() {
            assert!(wait.elapsed() < Duration::from_secs(10), "s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        endpoint
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl verify` of `cert` against `ca` for `name` (a DNS name or an IP address).
fn openssl_verifies(dir: &Path, ca: &str, cert: &str, name: &str) -> Result<(), String> {
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    std::fs::write(dir.join("leaf.pem"), cert).unwrap();
    let check =
        if name.parse::<std::net::IpAddr>().is_ok() { "-verify_ip" } else { "-verify_hostname" };
    let output = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(dir.join("ca.pem"))
        .args([check, name])
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The public key of a certificate and of a private key, as OpenSSL prints them.
fn public_keys(dir: &Path, cert: &str, key: &str) -> (String, String) {
    std::fs::write(dir.join("pair.pem"), cert).unwrap();
    std::fs::write(dir.join("pair.key"), key).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let from_cert =
        run(&["x509", "-noout", "-pubkey", "-in", dir.join("pair.pem").to_str().unwrap()]);
    let from_key = run(&["pkey", "-pubout", "-in", dir.join("pair.key").to_str().unwrap()]);
    (from_cert, from_key)
}

fn project(endpoint: &str, extra: &str) -> Project {
    Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n  ca:\n    type: internal-ca-certificate\n    ca_store: store://local/ca/root\n    validity: 30d\n    key_type: ecdsa-p256\nenvs:\n  dev:\n    TLS:\n      from: {{ store: \"store://local/tls/api\", service: \"svc://ca?kind=tls_certificate\" }}\n      rotation: {{ strategy: overlap, config: {{ names: [api.internal, 127.0.0.1], endpoint: \"{endpoint}\", renew_before: 33% }} }}\n{extra}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_issues_and_verifies_certificates_from_its_ca() {
    let work = tempfile::tempdir().unwrap();
    let ca = new_ca("dsops test CA");
    let served = leaf(&ca, "api.internal");
    let endpoint = Endpoint::start(work.path(), &served.0, &served.1);
    let project = project(&endpoint.address, "");
    project.put("ca/root", "cert", &ca.0);
    project.put("ca/root", "key", &ca.1);

    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    let names: Vec<&str> = run.steps.iter().map(|s| s.step_name()).collect();
    assert_eq!(names, ["stage", "apply", "verify", "promote", "retire"]);
    let verify = run.steps.iter().find(|s| s.step_name() == "verify").unwrap();
    assert!(verify.detail.contains("TLS handshakes for api.internal, 127.0.0.1"), "{verify:?}");
    assert!(
        verify.detail.contains(&format!(
            "{} presents another valid certificate of this CA",
            endpoint.address
        )),
        "{verify:?}"
    );
    let cert = project.read("tls/api", "cert", Label::Current).unwrap();
    let key = project.read("tls/api", "key", Label::Current).unwrap();
    let chain = project.read("tls/api", "chain", Label::Current).unwrap();
    assert_eq!(chain, ca.0);
    for name in ["api.internal", "127.0.0.1"] {
        openssl_verifies(work.path(), &ca.0, &cert, name).unwrap();
    }
    assert!(openssl_verifies(work.path(), &ca.0, &cert, "other.internal").is_err());
    let (from_cert, from_key) = public_keys(work.path(), &cert, &key);
    assert_eq!(from_cert, from_key, "the key goes with the certificate");

    // The endpoint moves to the new certificate; the next rotation issues another and the one
    // before stays valid.
    let address = endpoint.address.clone();
    drop(endpoint);
    let _endpoint = Endpoint::start_at(work.path(), &cert, &key, address);
    let second = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(second.state_name(), "Completed", "{second:?}");
    let newer = project.read("tls/api", "cert", Label::Current).unwrap();
    assert_ne!(newer, cert);
    assert_eq!(project.read("tls/api", "cert", Label::Previous).as_deref(), Some(cert.as_str()));
    openssl_verifies(work.path(), &ca.0, &cert, "api.internal").unwrap();
    let retire = second.steps.iter().find(|s| s.step_name() == "retire").unwrap();
    assert!(retire.detail.contains("nothing revoked: the previous certificate"), "{retire:?}");
    embedded.close().await;

    // The CA key and the issued keys are nowhere in the control plane's files.
    for secret in [ca.1.as_str(), key.as_str()] {
        let body = secret.lines().nth(1).unwrap();
        let hits = tree_contains(&project.state.join("cluster"), body.as_bytes());
        assert!(hits.is_empty(), "a private key is in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_of_another_ca_fails_verify_and_keeps_the_current_certificate() {
    let work = tempfile::tempdir().unwrap();
    let ca = new_ca("dsops test CA");
    let stranger = new_ca("someone else's CA");
    let served = leaf(&stranger, "api.internal");
    let endpoint = Endpoint::start(work.path(), &served.0, &served.1);
    let project = project(&endpoint.address, "");
    project.put("ca/root", "cert", &ca.0);
    project.put("ca/root", "key", &ca.1);
    let current = leaf(&ca, "api.internal");
    project.put("tls/api", "cert", &current.0);

    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "TLS").await;
    assert_eq!(run.state_name(), "RolledBack", "{run:?}");
    assert!(
        run.detail.contains("did not present a valid certificate for api.internal"),
        "{}",
        run.detail
    );
    assert_eq!(
        project.read("tls/api", "cert", Label::Current).as_deref(),
        Some(current.0.as_str())
    );
    assert!(project.read("tls/api", "cert", Label::Pending).is_none());
    embedded.close().await;
}
