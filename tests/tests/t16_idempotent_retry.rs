//! A retried write with the same request id is applied once — at the same leader, through a
//! follower's redirect, and after the leader changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_proto::wire::admin::ApplyConfigRequest;
use dsops_state::{Command, Outcome};
use dsops_tests::TestCluster;

const CONFIG: &str = "version: 1\nsecretStores: { local: { type: file } }\nenvs:\n  dev:\n    K: { from: { store: \"store://local/k#v\" }, rotation: { strategy: random } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_with_the_same_request_id_stores_one_version() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let request = ApplyConfigRequest {
        request_id: "apply-0123456789abcdef".into(),
        config_yaml: CONFIG.into(),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    };
    // The follower refuses with the leader's address.
    let redirect = cluster.admin_client(follower).apply_config(request.clone()).await.unwrap_err();
    assert_eq!(
        dsops_proto::error::leader_hint(&redirect).as_deref(),
        Some(cluster.address(leader))
    );
    let first =
        cluster.admin_client(leader).apply_config(request.clone()).await.unwrap().into_inner();
    let again = cluster.admin_client(leader).apply_config(request).await.unwrap().into_inner();
    assert_eq!(first.version, 1);
    assert_eq!(again, first);
    let versions = cluster.control(leader).read_current(|s| s.configs.len()).await.unwrap();
    assert_eq!(versions, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_leader_died_is_not_applied_twice() {
    let mut cluster = TestCluster::start(3).await;
    let old = cluster.leader().await;
    let command = Command::AppendAudit {
        action: "test.once".into(),
        subject: "once".into(),
        detail: String::new(),
    };
    let first = cluster
        .control(old)
        .write("test", "retry-across-leaders-1", command.clone())
        .await
        .unwrap();
    assert!(matches!(first.outcome, Outcome::Audited { .. }));
    cluster.kill(old).await;
    let rest = cluster.running();
    let new = cluster.leader_among(&rest).await;
    let retried =
        cluster.control(new).write("test", "retry-across-leaders-1", command).await.unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.index, first.index);
    let count = cluster
        .control(new)
        .read_current(|s| s.audit.events().iter().filter(|e| e.action == "test.once").count())
        .await
        .unwrap();
    assert_eq!(count, 1);
    cluster.shutdown().await;
}
