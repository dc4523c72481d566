//! Joining and leaving, from the cluster's side: a join token is spent only by a valid request
//! and only once; unknown tokens write nothing; a joined node is not handed the operator CA
//! key; a removed node's certificate no longer speaks raft; a retried token request cannot
//! hand out a token that does not work.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_identity::JoinToken;
use dsops_identity::{
    API_SERVER_NAME, CertifiedKey, RAFT_SERVER_NAME, client_config, new_csr, pinned_client_config,
};
use dsops_proto::ErrorCode;
use dsops_proto::wire::admin::{CreateJoinTokenRequest, RemoveNodeRequest};
use dsops_proto::wire::raft::node_join_client::NodeJoinClient;
use dsops_proto::wire::raft::raft_peer_client::RaftPeerClient;
use dsops_proto::wire::raft::{JoinRequest, Vote, VoteRequest};
use dsops_state::Command;
use dsops_tests::TestCluster;

async fn token(cluster: &TestCluster, id: &str) -> JoinToken {
    let leader = cluster.control(cluster.leader().await);
    let token = JoinToken::generate(leader.peer_fingerprint());
    let expires =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64
            + 600_000;
    leader
        .write(
            "test",
            id,
            Command::CreateJoinToken {
                token_hash: JoinToken::secret_hash(&token.secret),
                expires_at_ms: expires,
            },
        )
        .await
        .unwrap();
    token
}

fn join_client(
    cluster: &TestCluster,
    token: &JoinToken,
) -> NodeJoinClient<tonic::transport::Channel> {
    let tls = pinned_client_config(&token.ca_fingerprint).unwrap();
    NodeJoinClient::new(dsops_identity::channel(cluster.address(1), API_SERVER_NAME, tls).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_join_request_does_not_spend_the_token() {
    let cluster = TestCluster::start(1).await;
    let token = token(&cluster, "token-bad-join-0001").await;
    let mut client = join_client(&cluster, &token);
    let log_before = cluster.control(1).metrics().last_log_index;

    // Garbage CSR: refused, nothing written.
    let bad = JoinRequest {
        token_secret: token.secret.clone(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        address: "127.0.0.1:1".into(),
    };
    let status = client.join(bad).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::InvalidArgument, "{status:?}");
    // A wildcard address: refused.
    let (csr, learner_key) = new_csr("x").unwrap();
    let wildcard = JoinRequest {
        token_secret: token.secret.clone(),
        csr_pem: csr.clone(),
        address: "0.0.0.0:7400".into(),
    };
    assert_eq!(
        ErrorCode::from_status(&client.join(wildcard).await.unwrap_err()),
        ErrorCode::InvalidArgument
    );
    // An unknown token: refused without a raft write.
    let stranger = JoinRequest {
        token_secret: "ab".repeat(32),
        csr_pem: csr.clone(),
        address: "127.0.0.1:2".into(),
    };
    assert_eq!(
        ErrorCode::from_status(&client.join(stranger).await.unwrap_err()),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        cluster.control(1).metrics().last_log_index,
        log_before,
        "a refused join wrote to the log"
    );

    // The token still works for a proper request, once.
    let good = JoinRequest {
        token_secret: token.secret.clone(),
        csr_pem: csr.clone(),
        address: "127.0.0.1:3".into(),
    };
    let response = client.join(good.clone()).await.unwrap().into_inner();
    assert_eq!(response.node_id, 2);
    assert!(
        response.operator_ca.unwrap().key_pem.is_empty(),
        "a joining node must not receive the operator CA key"
    );
    // A learner holds no issuing CA key: it gets them once it is a voter, and asking before is
    // refused.
    assert!(response.agent_ca.unwrap().key_pem.is_empty());
    assert!(response.peer_ca.unwrap().key_pem.is_empty());
    let learner = CertifiedKey { cert_pem: response.certificate_pem.clone(), key_pem: learner_key };
    let tls = client_config(&cluster.admin().ca_pem, Some(&learner)).unwrap();
    let refused = NodeJoinClient::new(
        dsops_identity::channel(cluster.address(1), API_SERVER_NAME, tls).unwrap(),
    )
    .issuing_keys(dsops_proto::wire::raft::IssuingKeysRequest {})
    .await
    .unwrap_err();
    assert_eq!(ErrorCode::from_status(&refused), ErrorCode::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("not a voter"), "{refused:?}");
    // The same joiner retrying gets the same answer; anyone else is refused.
    assert_eq!(client.join(good).await.unwrap().into_inner().node_id, 2);
    let (other_csr, _) = new_csr("y").unwrap();
    let other = JoinRequest {
        token_secret: token.secret.clone(),
        csr_pem: other_csr,
        address: "127.0.0.1:4".into(),
    };
    let spent_before = cluster.control(1).metrics().last_log_index;
    let status = client.join(other).await.unwrap_err();
    assert!(status.message().contains("already used"), "{status:?}");
    // A spent token is refused before any raft write: it moves no index.
    assert_eq!(cluster.control(1).metrics().last_log_index, spent_before);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_cannot_speak_raft_and_voters_hold_the_issuing_keys() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let victim = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    // Voters (promoted after joining as learners) received the issuing keys, the operator CA's
    // among them (so whichever voter leads can enrol operators).
    assert!(cluster.data_dir(victim).tls().join("agent-ca.key").exists());
    assert!(cluster.data_dir(victim).tls().join("operator-ca.key").exists());
    assert!(cluster.control(victim).pki().peer.can_issue());
    let dir = cluster.data_dir(victim).clone();
    let identity = CertifiedKey {
        cert_pem: std::fs::read_to_string(dir.tls().join("node.pem")).unwrap(),
        key_pem: std::fs::read_to_string(dir.tls().join("node.key")).unwrap(),
    };
    let vote = || VoteRequest {
        vote: Some(Vote { term: 1, node_id: victim, committed: false }),
        last_log_id: None,
    };
    let ca = cluster.admin().ca_pem.clone();
    let leader_address = cluster.address(leader).to_owned();
    let raft_client = || {
        let tls = client_config(&ca, Some(&identity)).unwrap();
        RaftPeerClient::new(
            dsops_identity::channel(&leader_address, RAFT_SERVER_NAME, tls).unwrap(),
        )
    };
    raft_client().vote(vote()).await.expect("a member's certificate speaks raft");

    cluster.kill(victim).await;
    cluster
        .admin_client(leader)
        .remove_node(RemoveNodeRequest {
            request_id: "remove-for-raft-0001".into(),
            node_id: victim,
        })
        .await
        .unwrap();
    let status = raft_client().vote(vote()).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&status), ErrorCode::PermissionDenied, "{status:?}");
    // Its certificate is on the revocation list of the replicated state.
    let revoked = cluster
        .control(leader)
        .read_local(|s| s.revoked.get(&format!("peer:node-{victim}")).cloned())
        .await
        .expect("the removed node's certificate is revoked");
    assert!(revoked.reason.contains("removed"), "{revoked:?}");
    cluster.shutdown().await;
}

/// An operator certificate on the revocation list is refused by the admin API on every node;
/// a certificate issued for the same name afterwards works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_operator_certificate_is_refused_on_every_node() {
    use dsops_proto::wire::admin::ClusterStatusRequest;
    use dsops_proto::wire::admin::admin_client::AdminClient;
    let cluster = TestCluster::start(3).await;
    let pki = dsops_control_plane::pki::ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();
    let alice = pki.issue_operator("alice", 30).unwrap();
    let ca = cluster.admin().ca_pem.clone();
    let status_from = |node: u64, identity: CertifiedKey| {
        let tls = client_config(&ca, Some(&identity)).unwrap();
        let address = cluster.address(node).to_owned();
        async move {
            let channel = dsops_identity::channel(&address, API_SERVER_NAME, tls).unwrap();
            AdminClient::new(channel).cluster_status(ClusterStatusRequest {}).await
        }
    };
    let leader = cluster.leader().await;
    let viewer = dsops_proto::domain::RoleGrant {
        role: dsops_proto::domain::OperatorRole::Viewer,
        env: None,
    };
    cluster
        .write(
            "grant-alice",
            Command::SetRole { operator: "alice".into(), grant: viewer, granted: true },
        )
        .await;
    status_from(leader, alice.clone()).await.expect("alice's certificate works");
    // Issued in an earlier second than the revocation (certificates count in whole seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    cluster
        .write(
            "revoke-alice",
            Command::RevokeIdentity {
                role: "operator".into(),
                name: "alice".into(),
                reason: "left the company".into(),
            },
        )
        .await;
    for node in cluster.ids() {
        let refused = dsops_tests::wait_for(
            "the revocation on every node",
            std::time::Duration::from_secs(5),
            || {
                let alice = alice.clone();
                let status_from = &status_from;
                async move {
                    status_from(node, alice)
                        .await
                        .err()
                        .filter(|s| ErrorCode::from_status(s) == ErrorCode::PermissionDenied)
                }
            },
        )
        .await;
        assert_eq!(ErrorCode::from_status(&refused), ErrorCode::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("revoked"), "{refused:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let renewed = pki.issue_operator("alice", 30).unwrap();
    status_from(leader, renewed).await.expect("a certificate issued after the revocation works");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_token_request_is_refused_instead_of_printing_a_dead_token() {
    let cluster = TestCluster::start(1).await;
    let request =
        CreateJoinTokenRequest { request_id: "token-request-twice-01".into(), ttl_seconds: 600 };
    let first =
        cluster.admin_client(1).create_join_token(request.clone()).await.unwrap().into_inner();
    assert!(JoinToken::parse(&first.token).is_ok());
    let again = cluster.admin_client(1).create_join_token(request).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&again), ErrorCode::FailedPrecondition, "{again:?}");
    let short =
        CreateJoinTokenRequest { request_id: "token-request-short-1".into(), ttl_seconds: 5 };
    assert_eq!(
        ErrorCode::from_status(
            &cluster.admin_client(1).create_join_token(short).await.unwrap_err()
        ),
        ErrorCode::InvalidArgument
    );
    cluster.shutdown().await;
}
