//! An approver in the mix: runs of the gated environment (the operator's and the scheduler's)
//! wait for one signed approval; the approver decides each one after a random pause, approving
//! most and denying some, whichever node answers.

use std::time::Duration;

use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config};
use dsops_proto::domain::{OperatorRole, decision_bytes};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_tests::TestCluster;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;
use tonic::transport::Channel;

/// The environment whose runs need an approval, and the approver's name.
pub const GATED_ENV: &str = "gated";
const APPROVER: &str = "anna";

/// What the approver did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Decisions {
    pub approved: u64,
    pub denied: u64,
    /// Decisions no node took (the leader moved, the run ended meanwhile, a node was down).
    pub not_taken: u64,
}

/// Grants the approver its role on the gated environment and issues its certificate.
pub async fn enrol(cluster: &TestCluster) -> CertifiedKey {
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .grant_role(wire::GrantRoleRequest {
            request_id: format!("chaos-grant-{APPROVER}"),
            operator: APPROVER.into(),
            grant: Some(wire::RoleGrant {
                role: OperatorRole::Approver.to_wire(),
                env: GATED_ENV.into(),
            }),
        })
        .await
        .expect("grant the approver role");
    let pki = dsops_control_plane::pki::ClusterPki::load(&cluster.data_dir(1).tls())
        .expect("the cluster's CAs");
    pki.issue_operator(APPROVER, 1).expect("the approver's certificate")
}

fn client(ca_pem: &str, address: &str, who: &CertifiedKey) -> Option<AdminClient<Channel>> {
    let tls = client_config(ca_pem, Some(who)).ok()?;
    Some(AdminClient::new(dsops_identity::channel(address, API_SERVER_NAME, tls).ok()?))
}

/// One round: lists the runs awaiting approval at some node and decides each.
pub async fn round(
    cluster: &Mutex<TestCluster>,
    who: &CertifiedKey,
    rng: &mut StdRng,
    tally: &mut Decisions,
) {
    let (ca_pem, addresses) = {
        let cluster = cluster.lock().await;
        let addresses: Vec<String> =
            cluster.running().iter().map(|&id| cluster.address(id).to_owned()).collect();
        (cluster.admin().ca_pem.clone(), addresses)
    };
    let limit = Duration::from_secs(5);
    let mut waiting = None;
    for address in &addresses {
        let Some(mut client) = client(&ca_pem, address, who) else { continue };
        let request = wire::ListApprovalsRequest { env: GATED_ENV.into() };
        if let Ok(Ok(response)) = tokio::time::timeout(limit, client.list_approvals(request)).await
        {
            waiting = Some(response.into_inner().runs);
            break;
        }
    }
    for run in waiting.unwrap_or_default() {
        let Some(approval) = run.approval.clone() else { continue };
        let approve = rng.random_bool(0.85);
        let reason = if approve { "chaos: looks right" } else { "chaos: not now" };
        let signed_at_ms = dsops_proto::now_ms();
        let bytes = decision_bytes(
            &run.run_id,
            approval.round,
            &approval.plan_digest,
            approve,
            signed_at_ms,
            reason,
        );
        let Ok(signature) = dsops_identity::sign_message(&who.key_pem, &bytes) else { continue };
        let request = wire::DecideRequest {
            request_id: format!("chaos-decide-{}", dsops_proto::hex(&signature[..12])),
            run_id: run.run_id.clone(),
            approve,
            reason: reason.into(),
            plan_digest: approval.plan_digest.clone(),
            round: approval.round,
            signed_at_ms,
            signature_hex: dsops_proto::hex(&signature),
        };
        let mut taken = false;
        for address in &addresses {
            let Some(mut client) = client(&ca_pem, address, who) else { continue };
            if let Ok(Ok(_)) = tokio::time::timeout(limit, client.decide(request.clone())).await {
                taken = true;
                break;
            }
        }
        match (taken, approve) {
            (false, _) => tally.not_taken += 1,
            (true, true) => tally.approved += 1,
            (true, false) => tally.denied += 1,
        }
    }
}
