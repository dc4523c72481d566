//! Who may talk to a node. The raft service needs a certificate from this cluster's peer CA:
//! a certificate from another cluster's CA, an expired one, an operator's one, or none is
//! refused during the TLS handshake. The admin API needs an operator certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_control_plane::pki::ClusterPki;
use dsops_identity::{API_SERVER_NAME, CertifiedKey, RAFT_SERVER_NAME, client_config};
use dsops_proto::ErrorCode;
use dsops_proto::wire::admin::ClusterStatusRequest;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_proto::wire::raft::raft_peer_client::RaftPeerClient;
use dsops_proto::wire::raft::{
    AppendEntriesRequest, AppendFrame, AppendReply, Vote, VoteRequest, append_reply,
};
use dsops_tests::TestCluster;
use futures::StreamExt;
use time::{Duration, OffsetDateTime};

fn vote() -> VoteRequest {
    VoteRequest { vote: Some(Vote { term: 1, node_id: 99, committed: false }), last_log_id: None }
}

async fn raft_call(
    cluster: &TestCluster,
    server_name: &str,
    identity: Option<&CertifiedKey>,
) -> Result<(), tonic::Status> {
    let tls = client_config(&cluster.admin().ca_pem, identity).unwrap();
    let channel = dsops_identity::channel(cluster.address(1), server_name, tls).unwrap();
    RaftPeerClient::new(channel).vote(vote()).await.map(|_| ())
}

/// A refusal by the TLS layer carries no dsops error code: the request never reached a service.
fn refused_in_handshake(result: Result<(), tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert!(
        status.metadata().get(dsops_proto::error::ERROR_CODE_METADATA).is_none(),
        "{what}: refused by a service, not the handshake: {status:?}"
    );
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
        ),
        "{what}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_refuses_every_certificate_but_this_clusters_peers() {
    let cluster = TestCluster::start(1).await;
    let pki = ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();

    // A member's certificate works; a peer certificate of a node that is not a member passes
    // the handshake (same CA) but the service refuses it.
    let member = pki.issue_node(1, &["127.0.0.1".into()]).unwrap();
    raft_call(&cluster, RAFT_SERVER_NAME, Some(&member))
        .await
        .expect("a member's certificate is accepted");
    let stranger = pki.issue_node(42, &["127.0.0.1".into()]).unwrap();
    let status = raft_call(&cluster, RAFT_SERVER_NAME, Some(&stranger)).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::PermissionDenied, "{status:?}");

    let (other, _) = ClusterPki::generate("other-cluster").unwrap();
    let foreign = other.issue_node(2, &["127.0.0.1".into()]).unwrap();
    refused_in_handshake(
        raft_call(&cluster, RAFT_SERVER_NAME, Some(&foreign)).await,
        "a certificate from another CA",
    );

    let now = OffsetDateTime::now_utc();
    let expired = ClusterPki::issue_with_validity(
        &pki.peer,
        "node-7",
        now - Duration::days(10),
        now - Duration::days(1),
    )
    .unwrap();
    refused_in_handshake(
        raft_call(&cluster, RAFT_SERVER_NAME, Some(&expired)).await,
        "an expired certificate",
    );

    refused_in_handshake(raft_call(&cluster, RAFT_SERVER_NAME, None).await, "no certificate");

    let operator = pki.issue_operator("mallory", 1).unwrap();
    refused_in_handshake(
        raft_call(&cluster, RAFT_SERVER_NAME, Some(&operator)).await,
        "an operator certificate",
    );

    // Through the API name the handshake admits an operator, but the raft service refuses it.
    let status = raft_call(&cluster, API_SERVER_NAME, Some(&operator)).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::PermissionDenied, "{status:?}");
    let status = raft_call(&cluster, API_SERVER_NAME, None).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::Unauthenticated, "{status:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_an_operator_certificate() {
    let cluster = TestCluster::start(1).await;
    let pki = ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();
    let admin = |identity: Option<&CertifiedKey>| {
        let tls = client_config(&cluster.admin().ca_pem, identity).unwrap();
        AdminClient::new(dsops_identity::channel(cluster.address(1), API_SERVER_NAME, tls).unwrap())
    };
    admin(Some(&cluster.admin().identity))
        .cluster_status(ClusterStatusRequest {})
        .await
        .expect("the admin bundle works");
    let status = admin(None).cluster_status(ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::Unauthenticated);
    let peer = pki.issue_node(43, &["127.0.0.1".into()]).unwrap();
    let status = admin(Some(&peer)).cluster_status(ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::PermissionDenied);
    let (other, _) = ClusterPki::generate("elsewhere").unwrap();
    let foreign_operator = other.issue_operator("admin", 1).unwrap();
    let result =
        admin(Some(&foreign_operator)).cluster_status(ClusterStatusRequest {}).await.map(|_| ());
    refused_in_handshake(result, "an operator certificate from another cluster");
    cluster.shutdown().await;
}

/// An AppendStream frame with the given number and request.
fn frame(seq: u64, request: Option<AppendEntriesRequest>) -> AppendFrame {
    AppendFrame { seq, request }
}

/// Opens an AppendStream to node 1 with `identity` and sends it `frames`.
async fn append_stream(
    cluster: &TestCluster,
    identity: &CertifiedKey,
    frames: Vec<AppendFrame>,
) -> Result<tonic::Streaming<AppendReply>, tonic::Status> {
    let tls = client_config(&cluster.admin().ca_pem, Some(identity)).unwrap();
    let channel = dsops_identity::channel(cluster.address(1), RAFT_SERVER_NAME, tls).unwrap();
    let outgoing = futures::stream::iter(frames).chain(futures::stream::pending());
    Ok(RaftPeerClient::new(channel).append_stream(outgoing).await?.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_streams_take_members_only_frames_in_order_and_end_with_the_node() {
    let cluster = TestCluster::start(1).await;
    let pki = ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();
    let member = pki.issue_node(1, &["127.0.0.1".into()]).unwrap();
    // A heartbeat from a stale term: answered (the node's vote is higher), not applied.
    let stale = || AppendEntriesRequest {
        vote: Some(Vote { term: 0, node_id: 1, committed: true }),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };

    let stranger = pki.issue_node(42, &["127.0.0.1".into()]).unwrap();
    let status = append_stream(&cluster, &stranger, vec![]).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::PermissionDenied, "{status:?}");

    // Frames are answered in order, each with its number.
    let mut replies =
        append_stream(&cluster, &member, vec![frame(1, Some(stale())), frame(2, Some(stale()))])
            .await
            .unwrap();
    for seq in [1, 2] {
        let reply = replies.message().await.unwrap().unwrap();
        assert_eq!(reply.seq, seq);
        assert!(matches!(reply.result, Some(append_reply::Result::Response(_))), "{reply:?}");
    }

    // A frame out of order ends the stream with the reason.
    let mut skipped =
        append_stream(&cluster, &member, vec![frame(2, Some(stale()))]).await.unwrap();
    let status = skipped.message().await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::InvalidArgument, "{status:?}");
    assert!(status.message().contains("out of order"), "{status:?}");

    // A frame without a request is answered as invalid, and the stream ends.
    let mut empty = append_stream(&cluster, &member, vec![frame(1, None)]).await.unwrap();
    let reply = empty.message().await.unwrap().unwrap();
    assert!(matches!(reply.result, Some(append_reply::Result::Invalid(_))), "{reply:?}");
    assert!(empty.message().await.unwrap().is_none());

    // The first stream is still open (its sender sends nothing more): the node's shutdown, which
    // waits for open calls, ends it instead of waiting for ever.
    tokio::time::timeout(std::time::Duration::from_secs(20), cluster.shutdown())
        .await
        .expect("the node stops with an append stream open");
    assert!(!matches!(replies.message().await, Ok(Some(_))), "the stream ended");
}
