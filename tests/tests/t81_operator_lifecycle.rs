//! An operator's life on a 3-node cluster over mTLS: an admin invites; the invited person
//! enrols with the one-time token (no certificate yet: the token pins the cluster's CA), gets a
//! certificate from the operator CA naming them and holds the invited roles; renews for a new
//! key; is revoked, after which every node refuses its certificates within 5 s. Also: a token is
//! spent once, a bad CSR does not spend it, a token of another kind is not an invitation, and a
//! voter that did not run `init` can enrol operators after a failover.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::{Duration, Instant};

use dsops_identity::{API_SERVER_NAME, CertifiedKey, JoinToken, client_config, new_csr};
use dsops_proto::ErrorCode;
use dsops_proto::domain::OperatorRole;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_tests::TestCluster;
use tonic::transport::Channel;

fn client(cluster: &TestCluster, node: u64, identity: &CertifiedKey) -> AdminClient<Channel> {
    let tls = client_config(&cluster.admin().ca_pem, Some(identity)).unwrap();
    AdminClient::new(dsops_identity::channel(cluster.address(node), API_SERVER_NAME, tls).unwrap())
}

/// A client without a certificate that trusts the CA the token names.
fn pinned(cluster: &TestCluster, node: u64, token: &JoinToken) -> AdminClient<Channel> {
    let tls = dsops_identity::pinned_client_config(&token.ca_fingerprint).unwrap();
    AdminClient::new(dsops_identity::channel(cluster.address(node), API_SERVER_NAME, tls).unwrap())
}

async fn invite(
    admin: &mut AdminClient<Channel>,
    name: &str,
    grants: Vec<(OperatorRole, &str)>,
    id: &str,
) -> JoinToken {
    let response = admin
        .invite_operator(wire::InviteOperatorRequest {
            request_id: format!("invite-{id}-0123456789"),
            name: name.into(),
            grants: grants
                .into_iter()
                .map(|(role, env)| wire::RoleGrant { role: role.to_wire(), env: env.into() })
                .collect(),
            ttl_seconds: 600,
            certificate_days: 7,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response.token.starts_with("DSO1."), "{}", response.token);
    JoinToken::parse_operator(&response.token).unwrap()
}

/// Enrols with `token` at `node`: the new certificate and key.
async fn enroll(
    cluster: &TestCluster,
    node: u64,
    token: &JoinToken,
) -> Result<(CertifiedKey, wire::EnrollOperatorResponse), tonic::Status> {
    let (csr_pem, key_pem) = new_csr("anything").unwrap();
    let response = pinned(cluster, node, token)
        .enroll_operator(wire::EnrollOperatorRequest {
            token_secret: token.secret.clone(),
            csr_pem,
        })
        .await?
        .into_inner();
    Ok((CertifiedKey { cert_pem: response.certificate_pem.clone(), key_pem }, response))
}

fn code(status: &tonic::Status) -> ErrorCode {
    ErrorCode::from_status(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_are_invited_enrolled_renewed_and_revoked_everywhere() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);

    // Invited as approver in production; enrols on the leader.
    let token =
        invite(&mut admin, "bob", vec![(OperatorRole::Approver, "production")], "bob").await;
    // A bad CSR is refused and does not spend the token.
    let bad = pinned(&cluster, leader, &token)
        .enroll_operator(wire::EnrollOperatorRequest {
            token_secret: token.secret.clone(),
            csr_pem: "not a csr".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&bad), ErrorCode::InvalidArgument, "{bad:?}");
    // A follower sends the caller to the leader.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let redirected = enroll(&cluster, follower, &token).await.unwrap_err();
    assert_eq!(code(&redirected), ErrorCode::NotLeader, "{redirected:?}");
    let (bob, response) = enroll(&cluster, leader, &token).await.unwrap();
    assert_eq!(response.name, "bob");
    assert_eq!(response.ca_pem, cluster.admin().ca_pem, "the CA the CLI trusts");
    let seven_days = dsops_proto::now_ms() / 1000 + 7 * 86_400;
    let not_after = response.not_after.unwrap().seconds as u64;
    assert!(not_after.abs_diff(seven_days) < 120, "{not_after} vs {seven_days}");
    // Spent: a second use is refused.
    let again = enroll(&cluster, leader, &token).await.unwrap_err();
    assert_eq!(code(&again), ErrorCode::PermissionDenied, "{again:?}");
    // A node join token is not an invitation (it is not even one of its secrets).
    let unknown = JoinToken::generate(&token.ca_fingerprint);
    let refused = enroll(&cluster, leader, &unknown).await.unwrap_err();
    assert_eq!(code(&refused), ErrorCode::PermissionDenied, "{refused:?}");

    // bob holds exactly the invited role, on every node.
    let runs = || wire::GetRunsRequest { run_ids: vec![], with_steps: false };
    let mut as_bob = client(&cluster, follower, &bob);
    // The follower learns the enrolment from the leader (a heartbeat or so; longer on a loaded
    // machine); until then it refuses bob as holding no role.
    dsops_tests::wait_for("the follower to know bob's role", Duration::from_secs(10), || {
        let mut as_bob = as_bob.clone();
        async move { as_bob.get_runs(runs()).await.ok() }
    })
    .await;
    let join = as_bob
        .create_join_token(wire::CreateJoinTokenRequest {
            request_id: "bob-join-0123456789".into(),
            ttl_seconds: 600,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&join), ErrorCode::PermissionDenied, "{join:?}");
    assert!(join.message().contains("operator bob"), "{}", join.message());
    let listed = admin.list_operators(wire::ListOperatorsRequest {}).await.unwrap().into_inner();
    let row = listed.operators.iter().find(|o| o.name == "bob").unwrap();
    assert_eq!(row.grants.len(), 1);
    assert_eq!(row.grants[0].env, "production");
    assert_eq!(row.certificate_not_after.unwrap().seconds as u64, not_after);
    assert!(!row.revoked);

    // Renewal: a new key, a certificate for the same name; the old one keeps working until it
    // expires (nothing revoked it).
    let (csr_pem, key_pem) = new_csr("bob").unwrap();
    let renewed = client(&cluster, leader, &bob)
        .renew_operator(wire::RenewOperatorRequest {
            request_id: "bob-renew-0123456789".into(),
            csr_pem,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.name, "bob");
    let bob2 = CertifiedKey { cert_pem: renewed.certificate_pem, key_pem };
    client(&cluster, follower, &bob2).get_runs(runs()).await.unwrap();

    // Revocation: every node refuses both certificates within 5 s.
    let revoked_at = Instant::now();
    let response = admin
        .revoke_operator(wire::RevokeOperatorRequest {
            request_id: "revoke-bob-0123456789".into(),
            name: "bob".into(),
            reason: "left the team".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.grants.len(), 1, "the roles it held");
    for node in cluster.ids() {
        for identity in [&bob, &bob2] {
            loop {
                let answer = client(&cluster, node, identity).get_runs(runs()).await;
                match answer {
                    Err(status) if code(&status) == ErrorCode::PermissionDenied => {
                        assert!(status.message().contains("revoked"), "{}", status.message());
                        break;
                    }
                    _ if revoked_at.elapsed() > Duration::from_secs(5) => {
                        panic!("node {node} still serves bob 5 s after the revocation")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }
    let listed = admin.list_operators(wire::ListOperatorsRequest {}).await.unwrap().into_inner();
    let row = listed.operators.iter().find(|o| o.name == "bob").unwrap();
    assert!(row.revoked && row.grants.is_empty(), "{row:?}");
    // The last admin cannot be revoked.
    let last = admin
        .revoke_operator(wire::RevokeOperatorRequest {
            request_id: "revoke-admin-0123456789".into(),
            name: "admin".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&last), ErrorCode::FailedPrecondition, "{last:?}");
    let history = cluster.control(leader).audit_history(0, usize::MAX).unwrap();
    let actions: Vec<(&str, &str)> =
        history.events.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert!(actions.contains(&("operator.invited", "admin")), "{actions:?}");
    assert!(actions.contains(&("operator.enrolled", "bob")), "{actions:?}");
    assert!(actions.contains(&("operator.renewed", "bob")), "{actions:?}");
    assert!(actions.contains(&("certificate.revoked", "admin")), "{actions:?}");

    // After a failover, a voter that did not run init holds the operator CA key and enrols.
    cluster.kill(1).await;
    let survivors: Vec<u64> = cluster.running();
    let new_leader = cluster.leader_among(&survivors).await;
    assert_ne!(new_leader, 1);
    let mut admin = cluster.admin_client(new_leader);
    let token = invite(&mut admin, "carol", vec![(OperatorRole::Viewer, "")], "carol").await;
    let (carol, _) = enroll(&cluster, new_leader, &token).await.unwrap();
    client(&cluster, new_leader, &carol)
        .cluster_status(wire::ClusterStatusRequest {})
        .await
        .unwrap();
    cluster.shutdown().await;
}

/// An apply of 33 MiB, past the largest admin message a node reads.
fn oversized_apply(request_id: &str) -> wire::ApplyConfigRequest {
    wire::ApplyConfigRequest {
        request_id: request_id.into(),
        config_yaml: "#".repeat(33 << 20),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    }
}

/// The admin port reads no request from a client without an operator certificate but an
/// enrolment, and reads an enrolment only up to 64 KiB: a 33 MiB request is refused as
/// unauthenticated (before the gate, the node read it and refused it as too large), an oversized
/// enrolment is cut off without spending the token, and a normal one still works. A revoked
/// operator certificate gets nothing read either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_get_nothing_read_but_an_enrolment() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);
    let token = invite(&mut admin, "gatekeeper", vec![(OperatorRole::Viewer, "")], "gate").await;
    let mut anonymous = pinned(&cluster, leader, &token).max_encoding_message_size(64 << 20);

    let huge = anonymous.apply_config(oversized_apply("gate-apply-0123456789")).await.unwrap_err();
    assert_eq!(code(&huge), ErrorCode::Unauthenticated, "{huge:?}");
    assert!(huge.message().contains("operator certificate"), "{huge:?}");
    let read = anonymous.get_config(wire::GetConfigRequest::default()).await.unwrap_err();
    assert_eq!(code(&read), ErrorCode::Unauthenticated, "{read:?}");

    let oversized = anonymous
        .enroll_operator(wire::EnrollOperatorRequest {
            token_secret: token.secret.clone(),
            csr_pem: "x".repeat(100 << 10),
        })
        .await
        .unwrap_err();
    assert!(oversized.message().contains("length limit"), "{oversized:?}");
    let (certified, response) = enroll(&cluster, leader, &token).await.unwrap();
    assert_eq!(response.name, "gatekeeper");
    // The enrolled operator's requests are read as before.
    let mut gatekeeper = client(&cluster, leader, &certified).max_encoding_message_size(64 << 20);
    gatekeeper.get_config(wire::GetConfigRequest::default()).await.unwrap();
    // Once revoked, its certificate gets nothing read either: a 33 MiB request is refused as
    // revoked, not read and refused as too large.
    admin
        .revoke_operator(wire::RevokeOperatorRequest {
            request_id: "revoke-gatekeeper-0123456789".into(),
            name: "gatekeeper".into(),
            reason: "lost laptop".into(),
        })
        .await
        .unwrap();
    let revoked =
        gatekeeper.apply_config(oversized_apply("gate-apply-9876543210")).await.unwrap_err();
    assert_eq!(code(&revoked), ErrorCode::PermissionDenied, "{revoked:?}");
    assert!(revoked.message().contains("revoked"), "{revoked:?}");
    cluster.shutdown().await;
}
