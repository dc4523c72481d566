//! An evidence bundle exported from a 3-node cluster with a remote agent: the leader signs a
//! checkpoint covering the period's end (none is due yet), and the bundle — the chain, the
//! rotation's receipts signed by the agent, the certificates — verifies offline with the
//! cluster's root CA, and not with another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_control_plane::node::NodeOptions;
use dsops_proto::wire::admin as wire;
use dsops_tests::agents::{AgentProject, rotate};
use dsops_tests::cluster::fast_options;
use dsops_tests::{RunView, TestCluster};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
envs:
  prod:
    API_KEY: { from: { store: \"store://local/prod/api#key\" }, rotation: { strategy: random } }
  dev:
    OTHER: { from: { store: \"store://local/dev/other#key\" }, rotation: { strategy: random } }
";

async fn export(cluster: &TestCluster, env: &str, from_s: i64, to_s: i64) -> Vec<u8> {
    let leader = cluster.leader().await;
    let request = wire::ExportEvidenceRequest {
        env: env.into(),
        from: Some(prost_types::Timestamp { seconds: from_s, nanos: 0 }),
        to: Some(prost_types::Timestamp { seconds: to_s, nanos: 0 }),
        request_id: dsops_cli::embedded::random_id(),
    };
    let mut stream =
        cluster.admin_client(leader).export_evidence(request).await.unwrap().into_inner();
    let mut bundle = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bundle.extend_from_slice(&chunk.data);
    }
    bundle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_bundle_verifies_offline_down_to_each_receipt() {
    // Checkpoints are due every hour: the export has to ask for one.
    let options = NodeOptions { checkpoint_every: Duration::from_secs(3600), ..fast_options() };
    let cluster = TestCluster::start_with(3, options).await;
    let project = AgentProject::new(CONFIG);
    project.apply(&cluster).await;
    let _agents = project.start_agents(&cluster, &[("a1", "default")]).await;
    let start = dsops_proto::now_ms() as i64 / 1000 - 1;
    let run = rotate(&cluster, "prod", "API_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    rotate(&cluster, "dev", "OTHER").await;
    let end = dsops_proto::now_ms() as i64 / 1000 + 1;

    let bundle = export(&cluster, "prod", start, end).await;
    let root = cluster.control(cluster.leader().await).pki().root_cert_pem.clone();
    let report = dsops_evidence::verify(&bundle, Some(&root));
    assert_eq!(report.failure(), None, "{:#?}", report.checks);
    let said: Vec<&str> = report.checks.iter().map(|c| c.detail.as_str()).collect();
    // The prod run's receipts only (not dev's).
    let leader = cluster.leader().await;
    let signed = cluster.control(leader).read_local(|s| s.runs[&run.run_id].receipts.len()).await;
    assert!(signed >= 2);
    let receipts = said.iter().find(|d| d.contains("receipts verify")).unwrap();
    assert!(receipts.starts_with(&format!("{signed} receipts")), "{said:#?}");
    assert!(said.iter().any(|d| d.contains("signed checkpoints verify")), "{said:#?}");
    let scope = report.scope.unwrap();
    assert_eq!(scope.env, "prod");
    assert_eq!(scope.generation, 1);

    // Exporting again up to now signs at most one checkpoint, then nothing more: the only
    // events since are checkpoints, which need none over them (a viewer cannot grow the log).
    let head = || async {
        let leader = cluster.leader().await;
        cluster.control(leader).read_local(|s| s.audit.head().seq).await
    };
    let later = end + 60;
    assert_eq!(
        dsops_evidence::verify(&export(&cluster, "", start, later).await, None).failure(),
        None
    );
    let before = head().await;
    for to in [later + 1, later + 2] {
        let again = export(&cluster, "", start, to).await;
        assert_eq!(dsops_evidence::verify(&again, None).failure(), None);
    }
    assert_eq!(head().await, before, "repeated exports wrote to the log");

    // Another cluster's root is refused.
    let other = TestCluster::start(1).await;
    let foreign = other.control(1).pki().root_cert_pem.clone();
    let refused = dsops_evidence::verify(&bundle, Some(&foreign));
    assert_eq!(refused.failure(), Some(dsops_evidence::Failure::Signature));
    other.shutdown().await;

    // A period with no event is an error naming it.
    let leader = cluster.leader().await;
    let empty = wire::ExportEvidenceRequest {
        env: String::new(),
        from: Some(prost_types::Timestamp { seconds: 1_000, nanos: 0 }),
        to: Some(prost_types::Timestamp { seconds: 2_000, nanos: 0 }),
        request_id: dsops_cli::embedded::random_id(),
    };
    let status = cluster.admin_client(leader).export_evidence(empty).await.unwrap_err();
    assert!(status.message().contains("no audit event"), "{status:?}");
    cluster.shutdown().await;
}
