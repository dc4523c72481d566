//! Membership at run time: nodes join as learners and are promoted to keep 1, 3 or 5 voters;
//! a node can be removed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_proto::wire::admin::{ClusterStatusRequest, RemoveNodeRequest};
use dsops_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_voters_then_remove_one() {
    let mut cluster = TestCluster::start(3).await;
    cluster.add_node().await;
    // Four nodes: the fourth waits as a learner (an even voter count is never formed).
    let leader = cluster.leader().await;
    let status = cluster
        .admin_client(leader)
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status
            .members
            .iter()
            .filter(|m| m.role() == dsops_proto::wire::admin::MemberRole::Learner)
            .count(),
        1,
        "{status:?}"
    );
    cluster.add_node().await;
    cluster.wait_voters(5).await;

    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().rev().find(|id| *id != leader).unwrap();
    let removed = cluster
        .admin_client(leader)
        .remove_node(RemoveNodeRequest {
            request_id: "remove-node-0000001".into(),
            node_id: victim,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!removed.voter_ids.contains(&victim));
    assert_eq!(removed.voter_ids.len(), 4);
    let status = cluster
        .admin_client(cluster.leader().await)
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.members.iter().all(|m| m.id != victim), "{status:?}");
    let record = cluster
        .control(cluster.leader().await)
        .read_current(|s| s.nodes.contains_key(&victim))
        .await
        .unwrap();
    assert!(!record, "the removed node's record stayed");
    cluster.shutdown().await;
}
