//! The leader promotes caught-up learners so the cluster keeps 1, 3 or 5 voters.
//!
//! A node joins as a learner. Once its log is within [`CAUGHT_UP`] entries of the leader's, it
//! is a candidate; the leader promotes candidates only in steps that keep the voter count odd
//! (1 → 3 → 5), never beyond five.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ChangeMembers;

use dsops_proto::ErrorCode;
use tonic::Status;

use crate::control::{ControlPlane, WriteError};
use dsops_state::NodeRole;

/// A learner this close to the leader's last log index counts as caught up.
pub const CAUGHT_UP: u64 = 10;
/// The most voters.
pub const MAX_VOTERS: usize = 5;

/// How many voters the cluster should have with `available` voters-to-be (odd, at most five).
pub fn target_voters(available: usize) -> usize {
    let capped = available.min(MAX_VOTERS);
    if capped.is_multiple_of(2) { capped.saturating_sub(1).max(1) } else { capped }
}

/// Runs until the node shuts down.
pub async fn run(control: ControlPlane, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = promote_once(&control).await {
            tracing::debug!(%error, "promotion check");
        }
    }
}

async fn promote_once(control: &ControlPlane) -> Result<(), String> {
    let metrics = control.metrics();
    if metrics.current_leader != Some(control.node_id()) {
        return Ok(());
    }
    let membership = metrics.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return Ok(()); // A change is in progress.
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let last = metrics.last_log_index.unwrap_or(0);
    let Some(replication) = metrics.replication else { return Ok(()) };
    let roles = control
        .read_local(|state| {
            state
                .nodes
                .iter()
                .map(|(id, n)| (*id, n.role))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .await;
    let candidates: Vec<u64> = membership
        .learner_ids()
        .filter(|id| roles.get(id).copied().unwrap_or(NodeRole::Voter) == NodeRole::Voter)
        .filter(|id| {
            replication
                .get(id)
                .copied()
                .flatten()
                .is_some_and(|matched| matched.index + CAUGHT_UP >= last)
        })
        .collect();
    let target = target_voters(voters.len() + candidates.len());
    if target <= voters.len() {
        return Ok(());
    }
    let promote: BTreeSet<u64> = candidates.into_iter().take(target - voters.len()).collect();
    tracing::info!(?promote, voters = voters.len(), target, "promoting learners to voters");
    control
        .raft()
        .change_membership(ChangeMembers::AddVoterIds(promote), false)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// A membership change; a follower's refusal becomes `not_leader` with the leader's address.
/// While another change (a learner's promotion, say) is still committing, it waits for it, up to
/// ten seconds.
pub(super) async fn change_membership(
    control: &ControlPlane,
    change: ChangeMembers<u64, openraft::BasicNode>,
) -> Result<(), Status> {
    use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
    let started = std::time::Instant::now();
    loop {
        match control.raft().change_membership(change.clone(), false).await {
            Ok(_) => return Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                return Err(WriteError::NotLeader { leader: forward.leader_node.map(|n| n.addr) }
                    .to_status());
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) if started.elapsed() < std::time::Duration::from_secs(10) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => {
                return Err(ErrorCode::Unavailable.to_status(format!("membership change: {error}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::target_voters;

    #[test]
    fn voter_counts_stay_odd_and_at_most_five() {
        let targets: Vec<usize> = (0..9).map(target_voters).collect();
        assert_eq!(targets, [1, 1, 1, 3, 3, 5, 5, 5, 5]);
    }
}
