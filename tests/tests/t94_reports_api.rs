//! The reports API of a running node, over HTTPS, against clients nobody here wrote:
//! schemathesis (PyPI) exercises every endpoint of the OpenAPI document with a report token and
//! finds no 5xx and no response that breaks the schema; `promtool check metrics` accepts
//! `/metrics`; the compliance PDF is a PDF and the evidence bundle verifies offline. Around
//! them: no credential is refused with the JSON error shape, a token reads only its
//! environments, an operator certificate reads everything, a revoked token stops working.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use dsops_control_plane::node::NodeOptions;
use dsops_proto::wire::admin as wire;
use dsops_tests::TestCluster;
use dsops_tests::agents::{AgentProject, rotate};
use dsops_tests::cluster::fast_options;
use dsops_tests::runs::RunView as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
policies:
  standard: { envs: [production], maxAge: 30d }
envs:
  production:
    API_KEY: { from: { store: \"store://local/prod/api#key\" }, rotation: { strategy: random } }
    TOKEN: { from: { store: \"store://local/prod/token#v\" }, rotation: { strategy: random } }
  dev:
    OTHER: { from: { store: \"store://local/dev/other#key\" }, rotation: { strategy: random } }
";

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// GET `path` over HTTPS/1.1, trusting the cluster's CA, with a bearer token or a client
/// certificate.
async fn get(
    address: SocketAddr,
    ca_pem: &str,
    path: &str,
    bearer: Option<&str>,
    identity: Option<&dsops_identity::CertifiedKey>,
) -> Reply {
    let mut config = (*dsops_identity::client_config(ca_pem, identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_owned())
    };
    let mut body = raw[split..].to_vec();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let end = at + body[at..].windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&body[at..end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&body[end + 2..end + 2 + size]);
            at = end + 2 + size + 2;
        }
        body = out;
    }
    Reply { status, content_type: header("content-type").unwrap_or_default(), body }
}

async fn token(cluster: &TestCluster, envs: &[&str]) -> (String, String) {
    let leader = cluster.leader().await;
    let created = cluster
        .admin_client(leader)
        .create_report_token(wire::CreateReportTokenRequest {
            request_id: dsops_cli::embedded::random_id(),
            name: "auditor".into(),
            envs: envs.iter().map(|e| (*e).to_owned()).collect(),
            ttl_seconds: 86_400,
        })
        .await
        .unwrap()
        .into_inner();
    (created.id, created.token)
}

fn python() -> String {
    std::env::var("DSOPS_TEST_PYTHON").expect(
        "DSOPS_TEST_PYTHON: the test script installs schemathesis into a virtual environment",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_api_holds_up_against_schemathesis_promtool_and_poppler() {
    let options = NodeOptions { reports_listen: Some("127.0.0.1:0".into()), ..fast_options() };
    let cluster = TestCluster::start_with(1, options).await;
    let project = AgentProject::new(CONFIG);
    project.apply(&cluster).await;
    let _agents = project.start_agents(&cluster, &[("a1", "default")]).await;
    let from = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for key in ["API_KEY", "TOKEN"] {
        assert_eq!(rotate(&cluster, "production", key).await.state_name(), "Completed");
    }
    rotate(&cluster, "dev", "OTHER").await;
    let address = cluster.reports_address(1).expect("the reports API listens");
    let ca = cluster.admin().ca_pem.clone();

    // No credential: 401 with the one error shape and a Bearer challenge.
    let anonymous = get(address, &ca, "/v1/status?env=production", None, None).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["error"]["code"], "unauthenticated");
    assert_eq!(
        get(address, &ca, "/v1/status?env=production", Some("rt-nope.x"), None).await.status,
        401
    );
    let openapi = get(address, &ca, "/v1/openapi.json", None, None).await;
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    // The probes answer without a credential, and say nothing else.
    let alive = get(address, &ca, "/healthz", None, None).await;
    assert_eq!((alive.status, alive.json()), (200, serde_json::json!({ "status": "ok" })));
    let ready = get(address, &ca, "/readyz", None, None).await.json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["leader"], cluster.leader().await);

    // A token scoped to production reads production only.
    let (scoped_id, scoped) = token(&cluster, &["production"]).await;
    let status = get(address, &ca, "/v1/status?env=production", Some(&scoped), None).await;
    assert_eq!(status.status, 200, "{}", String::from_utf8_lossy(&status.body));
    let keys: Vec<String> = status.json()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["API_KEY", "TOKEN"]);
    let other = get(address, &ca, "/v1/status?env=dev", Some(&scoped), None).await;
    assert_eq!(
        (other.status, other.json()["error"]["code"].clone()),
        (403, "permission_denied".into())
    );
    let audit = get(address, &ca, "/v1/audit", Some(&scoped), None).await;
    assert_eq!(audit.status, 400, "a scoped token names its environment");
    let audit = get(
        address,
        &ca,
        &format!("/v1/audit?env=production&from={from}&limit=2"),
        Some(&scoped),
        None,
    )
    .await;
    let page = audit.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["subject"].as_str().unwrap().starts_with("production/"))
    );
    assert!(page["next_cursor"].is_string(), "more events than one page: {page}");

    // An operator certificate reads every environment.
    let admin = cluster.admin().identity.clone();
    let dev = get(address, &ca, "/v1/status?env=dev", None, Some(&admin)).await;
    assert_eq!(dev.status, 200, "{}", String::from_utf8_lossy(&dev.body));

    // The compliance PDF, the evidence bundle, and /metrics through promtool.
    let pdf =
        get(address, &ca, "/v1/compliance/pci-dss?env=production&format=pdf", Some(&scoped), None)
            .await;
    assert_eq!((pdf.status, pdf.content_type.as_str()), (200, "application/pdf"));
    assert!(pdf.body.starts_with(b"%PDF-"));
    let to = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    let to = to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let bundle = get(
        address,
        &ca,
        &format!("/v1/evidence?env=production&from={from}&to={to}"),
        Some(&scoped),
        None,
    )
    .await;
    assert_eq!(bundle.status, 200, "{}", String::from_utf8_lossy(&bundle.body));
    let verified =
        dsops_evidence::verify(&bundle.body, Some(&cluster.control(1).pki().root_cert_pem));
    assert_eq!(verified.failure(), None, "{:#?}", verified.checks);
    let metrics = get(address, &ca, "/metrics", Some(&scoped), None).await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains("key=\"API_KEY\"") && !text.contains("key=\"OTHER\""), "scoped: {text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let linted = promtool.wait_with_output().unwrap();
    assert!(
        linted.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    // schemathesis, with a token for every environment, against every operation.
    let (_, everything) = token(&cluster, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    // An outside client trusts the cluster's root CA; the node sends its chain up to it.
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &cluster.control(1).pki().root_cert_pem).unwrap();
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/reports-v1.json");
    let schemathesis = std::path::Path::new(&python()).with_file_name("schemathesis");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .arg("run")
            .arg(&schema)
            .args(["--url", &format!("https://127.0.0.1:{}", address.port())])
            .args(["--header", &format!("Authorization: Bearer {everything}")])
            .arg("--tls-verify")
            .arg(&ca_file)
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--max-examples", "25", "--seed", "1", "--workers", "1", "--request-timeout", "30"])
            .arg("--generation-deterministic")
            .env("NO_COLOR", "1")
            .current_dir(dir.path())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "schemathesis failed:\n{said}");
    // Every operation of the document was exercised, none failed a check.
    assert!(
        said.contains("Selected: 10/10") && said.contains("Tested: 10"),
        "not every operation was tested:\n{said}"
    );
    assert!(!said.contains(" failed"), "{said}");

    // A revoked token stops at once.
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .revoke_report_token(wire::RevokeReportTokenRequest {
            request_id: dsops_cli::embedded::random_id(),
            id: scoped_id,
        })
        .await
        .unwrap();
    assert_eq!(
        get(address, &ca, "/v1/status?env=production", Some(&scoped), None).await.status,
        401
    );
    cluster.shutdown().await;
}
