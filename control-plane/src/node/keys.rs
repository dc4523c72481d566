//! Only voters hold the issuing CA keys. A node joins as a learner with the CAs' certificates
//! only; once the leader has promoted it, it asks the leader for the keys (`IssuingKeys`, with
//! its node certificate), checks they belong to the certificates it trusts, keeps them in
//! `tls/` (mode 0600) and can then issue, should it lead. A learner (a read replica, a node
//! still catching up) therefore never held a key that a compromise of it would leak.

use std::time::Duration;

use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::node_join_client::NodeJoinClient;
use tokio::sync::watch;

use super::layout::DataDir;
use crate::control::ControlPlane;
use dsops_identity::{API_SERVER_NAME, client_config};

/// How often a voter without the keys asks.
const EVERY: Duration = Duration::from_millis(500);

/// Asks for the issuing keys whenever this node is a voter without them; until `shutdown`.
pub async fn run(control: ControlPlane, dir: DataDir, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(EVERY);
    // With the peer and agent keys held, a missing operator CA key (a cluster whose leader
    // predates its distribution) is asked for once a minute, not every tick.
    let mut operator_asked: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let pki = control.pki();
        if pki.peer.can_issue() && pki.agent.can_issue() {
            if pki.operator.is_some()
                || operator_asked.is_some_and(|at| at.elapsed() < Duration::from_secs(60))
            {
                continue;
            }
            operator_asked = Some(std::time::Instant::now());
        }
        let metrics = control.metrics();
        let me = control.node_id();
        if !metrics.membership_config.membership().voter_ids().any(|v| v == me) {
            continue;
        }
        let Some((leader, address)) = control.leader().filter(|(leader, _)| *leader != me) else {
            continue;
        };
        match fetch(&control, &dir, &address).await {
            Ok(()) => tracing::info!(leader, "issuing CA keys received from the leader"),
            Err(error) => tracing::debug!(leader, %error, "issuing CA keys not received yet"),
        }
    }
}

async fn fetch(control: &ControlPlane, dir: &DataDir, leader: &str) -> Result<(), String> {
    let pki = control.pki();
    let node_cert = dir.read_node_cert()?;
    let tls = client_config(&pki.peer.cert_pem, Some(&node_cert)).map_err(|e| e.to_string())?;
    let channel =
        dsops_identity::channel(leader, API_SERVER_NAME, tls).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        NodeJoinClient::new(channel).issuing_keys(wire::IssuingKeysRequest {}),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_owned())?
    .map_err(|status| status.message().to_owned())?
    .into_inner();
    let key = |m: Option<wire::CaMaterial>| m.map(|m| m.key_pem).unwrap_or_default();
    let keyed = pki
        .with_issuing_keys(
            &key(response.peer_ca),
            &key(response.agent_ca),
            &key(response.operator_ca),
        )
        .map_err(|e| e.to_string())?;
    keyed.save(&dir.tls()).map_err(|e| e.to_string())?;
    control.set_pki(keyed);
    Ok(())
}
