//! Receipts from agents: committing one (the state machine verifies it), and sending the step its
//! entry dispatched to the agent that sent it, without waiting for the dispatcher.

use dsops_proto::domain::SignedReceipt;
use dsops_state::{Command, Outcome};

use super::dispatcher::{StepOrder, jitter, send};
use crate::control::{ControlPlane, WriteError};

/// Why a receipt was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The state machine refused it (stale, late, bad signature, ...): final, and audited.
    #[error("{0}")]
    Refused(String),
    /// It could not be committed here (not the leader, no quorum): send it again later.
    #[error("not committed: {0}")]
    NotCommitted(String),
}

/// What an agent is told when the receipt it sent names another agent.
pub const NOT_THE_SENDER: &str =
    "the receipt names another agent than the one whose certificate sent it";

/// Commits a receipt that agent `sender` (the id its session's certificate names, or the
/// in-process agent's) sent; the state machine verifies it. Returns whether it was accepted and,
/// if not, why, in words that name no other agent.
///
/// A receipt naming any agent but its sender is refused before anything is written, so one agent
/// cannot speak, or be blamed, for another. The request id covers the exact signed bytes: only
/// the very same receipt, sent again, gets the remembered answer, never a different receipt that
/// names the same run, step and attempt.
pub async fn submit_receipt(
    control: &ControlPlane,
    receipt: &SignedReceipt,
    sender: &str,
) -> Result<(), ReceiptError> {
    let body = &receipt.body;
    if body.agent_id.as_str() != sender {
        return Err(ReceiptError::Refused(NOT_THE_SENDER.to_owned()));
    }
    let digest = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(&receipt.body_bytes);
        hasher.update(receipt.signature);
        dsops_proto::hex(&hasher.finalize()[..12])
    };
    let request_id = format!(
        "receipt-{}-{}-{}-{}-{}-{digest}",
        body.run_id,
        body.generation.get(),
        body.step,
        body.attempt,
        body.agent_id
    );
    let agent_id = body.agent_id.to_string();
    // Judged here first, on the leader's state, with the signature verified once: a receipt the
    // state machine would refuse costs no raft write, only a count in the next refusal summary.
    // Every node's apply relies on the signature check while that key is still the agent's.
    enum Verdict {
        Remembered(Outcome),
        Refused(dsops_state::ReceiptRefusal),
        Judged(Option<String>),
    }
    let verdict = control
        .read_local(|state| {
            if let Some(previous) = state.dedup.get(&request_id) {
                return Verdict::Remembered(previous.outcome.clone());
            }
            let mut verified_with = None;
            let judged = dsops_state::judge_receipt(state, receipt, |public_key| {
                let ok = dsops_proto::hex_decode(public_key)
                    .and_then(|k| <[u8; 32]>::try_from(k).ok())
                    .is_some_and(|k| receipt.verify(&k).is_ok());
                if ok {
                    verified_with = Some(public_key.to_owned());
                }
                ok
            });
            match judged {
                Ok(_) => Verdict::Judged(verified_with),
                Err(refusal) => Verdict::Refused(refusal),
            }
        })
        .await;
    let verified_with = match verdict {
        Verdict::Remembered(Outcome::ReceiptRefused { for_agent, .. }) => {
            return Err(ReceiptError::Refused(if for_agent.is_empty() {
                "refused".to_owned()
            } else {
                for_agent
            }));
        }
        Verdict::Remembered(_) => {
            // Committed before (this is a resend): its chained dispatch may still be unsent.
            send_dispatched(control, body.run_id.as_str(), &agent_id).await;
            return Ok(());
        }
        Verdict::Refused(refusal) => {
            tracing::debug!(%agent_id, reason = %refusal.reason, "receipt refused before the log");
            control.refusals().count(
                "receipt.refused",
                &format!("agent {agent_id}"),
                refusal.for_agent,
                None,
                Some(&format!("{}: {}", refusal.subject, refusal.reason)),
            );
            control.agents().wake();
            return Err(ReceiptError::Refused(refusal.for_agent.to_owned()));
        }
        Verdict::Judged(verified_with) => verified_with,
    };
    let command = Command::RecordReceipt {
        body_hex: dsops_proto::hex(&receipt.body_bytes),
        signature_hex: dsops_proto::hex(&receipt.signature),
        jitter_permille: jitter(),
        verified_with,
        // The agent that answered is connected and can do the run: it takes the next step.
        next_agent: Some(agent_id.clone()),
    };
    let actor = format!("agent:{agent_id}");
    let result = match control.write(&actor, &request_id, command).await {
        Ok(response) => match response.outcome {
            Outcome::ReceiptRefused { for_agent, .. } => {
                Err(ReceiptError::Refused(if for_agent.is_empty() {
                    "refused".to_owned()
                } else {
                    for_agent
                }))
            }
            _ => {
                send_dispatched(control, body.run_id.as_str(), &agent_id).await;
                Ok(())
            }
        },
        Err(WriteError::Rejected { message, .. }) => Err(ReceiptError::Refused(message)),
        Err(error) => Err(ReceiptError::NotCommitted(error.to_string())),
    };
    // Whatever happened, the run may have moved: the dispatcher looks now.
    control.agents().wake();
    result
}

/// Sends the step a receipt's entry dispatched to `agent_id`, if it did.
async fn send_dispatched(control: &ControlPlane, run_id: &str, agent_id: &str) {
    let order = control
        .read_local(|state| {
            let run = state.runs.get(run_id)?;
            let d = run.dispatched.as_ref().filter(|d| d.agent_id == agent_id)?;
            Some((StepOrder::of(run, d.step, d.checked_step, d.attempt), d.deadline_ms))
        })
        .await;
    if let Some((order, deadline_ms)) = order {
        send(control, agent_id, &order, deadline_ms, false);
    }
}
