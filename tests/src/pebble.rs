//! A real ACME CA for tests: Debian's `pebble` (Let's Encrypt's test server) with
//! `pebble-challtestsrv` as its DNS server, each test's own pair on free ports in a temporary
//! directory. Challenges are validated for real: `http-01` by connecting to the name (which the
//! DNS server resolves to 127.0.0.1) on `http_port`; `dns-01` by looking up the TXT record that
//! the management API (`/set-txt`) put into the DNS server. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::processes::free_address;

/// A running pebble and its DNS server.
#[derive(Debug)]
pub struct Pebble {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    /// The ACME directory URL.
    pub directory: String,
    /// The PEM file of the CA that signs pebble's HTTPS listener (the agent's `ca_bundle`).
    pub ca_bundle: PathBuf,
    /// The port pebble connects to for `http-01`.
    pub http_port: u16,
    /// challtestsrv's management API (`/set-txt`, `/clear-txt`).
    pub management: String,
    /// The certificate (PEM) of pebble's HTTPS listener, for 127.0.0.1, signed by `ca_bundle`.
    pub listener_cert: PathBuf,
    /// Its key (PEM).
    pub listener_key: PathBuf,
}

fn port(address: &str) -> u16 {
    address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port")
}

fn spawn(command: &mut Command, log: PathBuf) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e} (scripts/test.sh installs pebble)"))
}

fn wait_listening(address: &str, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(started.elapsed() < Duration::from_secs(15), "{what} did not start on {address}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    /// Starts pebble and challtestsrv.
    pub fn start() -> Pebble {
        let dir = tempfile::tempdir().expect("temp dir");
        // pebble's HTTPS listener: a certificate for 127.0.0.1 from a CA of our own.
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.distinguished_name.push(DnType::CommonName, "pebble listener CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::from_ca_cert_pem(&ca.pem(), ca_key).expect("issuer");
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        let listener = params.signed_by(&key, &issuer).expect("listener cert");
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ca.pem"), ca.pem()).expect("write");
        std::fs::write(path("cert.pem"), listener.pem()).expect("write");
        std::fs::write(path("key.pem"), key.serialize_pem()).expect("write");

        let (acme, management_pebble) = (free_address(), free_address());
        let (dns, management) = (free_address(), free_address());
        let http_port = port(&free_address());
        let tls_port = port(&free_address());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": acme,
            "managementListenAddress": management_pebble,
            "certificate": path("cert.pem"),
            "privateKey": path("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(path("pebble.json"), config.to_string()).expect("write");

        let mut children = Vec::new();
        children.push(spawn(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &dns, "-management", &management])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""]),
            path("challtestsrv.log"),
        ));
        wait_listening(&management, "pebble-challtestsrv");
        children.push(spawn(
            Command::new("pebble")
                .arg("-config")
                .arg(path("pebble.json"))
                .args(["-dnsserver", &dns])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0"),
            path("pebble.log"),
        ));
        wait_listening(&acme, "pebble");
        Pebble {
            children,
            directory: format!("https://{acme}/dir"),
            ca_bundle: path("ca.pem"),
            http_port,
            management: format!("http://{management}"),
            listener_cert: path("cert.pem"),
            listener_key: path("key.pem"),
            dir,
        }
    }

    /// pebble's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
