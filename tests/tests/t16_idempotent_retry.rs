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

/// A configuration too large for one log entry goes in parts (`stage_config_part`, then
/// `store_staged_config`); every node stores the whole text, and a retry stores no second
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_larger_than_one_entry_is_stored_in_parts_once() {
    use std::fmt::Write as _;
    let mut yaml =
        String::from("version: 1\nsecretStores: { local: { type: file } }\nenvs:\n  dev:\n");
    let mut i = 0;
    while yaml.len() < 3 * dsops_state::CONFIG_PART_BYTES {
        let _ = writeln!(
            yaml,
            "    K{i:06}: {{ from: {{ store: \"store://local/k{i}#v\" }}, rotation: {{ strategy: random }} }}"
        );
        i += 1;
    }
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let request = ApplyConfigRequest {
        request_id: "apply-large-0123456789".into(),
        config_yaml: yaml.clone(),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    };
    let first =
        cluster.admin_client(leader).apply_config(request.clone()).await.unwrap().into_inner();
    assert_eq!(first.version, 1);
    assert_eq!(first.changes.len(), i + 1, "one change per secret, and the store");
    let again = cluster.admin_client(leader).apply_config(request).await.unwrap().into_inner();
    assert_eq!(again, first, "the retry is answered with the first response");

    // Every node has the whole text, and no upload is left staged.
    for id in cluster.ids() {
        let (stored, staged, versions) = dsops_tests::wait_for(
            "the configuration on every node",
            std::time::Duration::from_secs(10),
            || async {
                cluster
                    .control(id)
                    .read_local(|s| {
                        s.current_config().map(|c| {
                            (c.config_yaml.clone(), s.staged_config.is_some(), s.configs.len())
                        })
                    })
                    .await
            },
        )
        .await;
        assert!(stored == yaml, "node {id} stored another text");
        assert!(!staged, "node {id} still holds the parts");
        assert_eq!(versions, 1, "node {id}");
    }
    let read = cluster
        .admin_client(leader)
        .get_config(dsops_proto::wire::admin::GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(read.config_yaml == yaml, "get_config returns the text applied");
    // It went in parts (the dedup table answers their ids).
    let parts = cluster
        .control(leader)
        .read_local(|s| {
            (0..)
                .take_while(|n| s.dedup.get(&format!("apply-large-0123456789/part-{n}")).is_some())
                .count()
        })
        .await;
    assert!(parts >= 3, "{parts} parts");
    cluster.shutdown().await;
}
