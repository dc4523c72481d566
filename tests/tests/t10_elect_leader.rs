//! A cluster elects exactly one leader that every node recognises; status reports it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_proto::wire::admin::ClusterStatusRequest;
use dsops_proto::wire::admin::MemberRole;
use dsops_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let terms: Vec<u64> =
        cluster.ids().iter().map(|id| cluster.control(*id).metrics().current_term).collect();
    assert!(terms.iter().all(|t| *t == terms[0]), "terms differ: {terms:?}");
    let status = cluster
        .admin_client(leader)
        .cluster_status(ClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.leader_id, leader);
    assert_eq!(status.members.len(), 3);
    let roles: Vec<MemberRole> = status.members.iter().map(|m| m.role()).collect();
    assert_eq!(roles.iter().filter(|r| **r == MemberRole::Leader).count(), 1, "{roles:?}");
    assert_eq!(roles.iter().filter(|r| **r == MemberRole::Follower).count(), 2, "{roles:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_leads_itself() {
    let cluster = TestCluster::start(1).await;
    assert_eq!(cluster.leader().await, 1);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_redirects_status_to_the_leader() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let status =
        cluster.admin_client(follower).cluster_status(ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(dsops_proto::ErrorCode::from_status(&status), dsops_proto::ErrorCode::NotLeader);
    assert_eq!(dsops_proto::error::leader_hint(&status).as_deref(), Some(cluster.address(leader)));
    cluster.shutdown().await;
}

/// A linearizable read asks every follower over the connection the leader already keeps to it:
/// twenty reads make no new TLS handshakes on the followers (each made one per read before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_reads_reuse_the_connections_to_followers() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader);
    control.read_current(|s| s.config_version()).await.unwrap();
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    let before: Vec<u64> = followers.iter().map(|id| cluster.tls_handshakes(*id)).collect();
    assert!(before.iter().all(|n| *n >= 1), "the leader is connected to its followers: {before:?}");
    for _ in 0..20 {
        control.read_current(|s| s.config_version()).await.unwrap();
    }
    for (id, before) in followers.iter().zip(before) {
        let made = cluster.tls_handshakes(*id) - before;
        // One reconnection is not a fault (a connection may drop); twenty would be one per read.
        assert!(made <= 1, "node {id}: {made} handshakes during twenty reads");
    }
    cluster.shutdown().await;
}
