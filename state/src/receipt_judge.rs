//! Judging an agent's receipt against the replicated state: the one function the state machine
//! applies and the leader uses to refuse a receipt before it costs a raft write.

use dsops_proto::domain::SignedReceipt;

use super::State;
use super::runs::Dispatch;

/// Why a receipt is refused: in full for the audit log, and in words for its sender that name
/// no other agent and no generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRefusal {
    /// What it concerns (`run run-…`), for the audit log.
    pub subject: String,
    /// Why, in full.
    pub reason: String,
    /// Why, as the sender is told.
    pub for_agent: &'static str,
}

pub(super) const MALFORMED: &str = "malformed receipt";
const NOT_TRUSTED: &str = "this agent is not enrolled here, or is revoked";
const BAD_SIGNATURE: &str = "the signature does not verify with this agent's key";
const NOT_EXPECTED: &str = "the run is not waiting for this receipt (unknown run, another segment's run, a stale generation, or a late, repeated or unexpected step)";

/// Judges a signed receipt against the state: the agent is enrolled and not revoked, the run
/// exists, is of the agent's segment and of this generation, is waiting for this step and
/// attempt from this agent, and — last, the only costly check — `signature_ok` accepts it for the
/// agent's registered public key (hex). Returns the dispatch it answers. Pure: the state machine
/// decides with it, and the leader uses it to refuse a receipt before it costs a raft write.
pub fn judge_receipt(
    state: &State,
    receipt: &SignedReceipt,
    signature_ok: impl FnOnce(&str) -> bool,
) -> Result<Dispatch, ReceiptRefusal> {
    let body = &receipt.body;
    let agent_id = body.agent_id.to_string();
    let run_id = body.run_id.to_string();
    let subject = format!("run {run_id}");
    let refuse = |reason: String, for_agent: &'static str| {
        Err(ReceiptRefusal { subject: subject.clone(), reason, for_agent })
    };
    let Some(agent) = state.agents.get(&agent_id) else {
        return refuse(format!("unknown agent {agent_id}"), NOT_TRUSTED);
    };
    if agent.revoked_at_ms.is_some() {
        return refuse(format!("agent {agent_id} is revoked"), NOT_TRUSTED);
    }
    let Some(run) = state.runs.get(&run_id) else {
        return refuse("unknown run".to_owned(), NOT_EXPECTED);
    };
    if run.spec.segment != agent.segment {
        return refuse(
            format!(
                "agent {agent_id} (segment {}) sent a receipt for a run of segment {}",
                agent.segment, run.spec.segment
            ),
            NOT_EXPECTED,
        );
    }
    if body.generation.get() != run.generation {
        return refuse(
            format!(
                "stale generation {} (the run holds {})",
                body.generation.get(),
                run.generation
            ),
            NOT_EXPECTED,
        );
    }
    let step = body.step;
    let expected = run
        .dispatched
        .as_ref()
        .filter(|d| d.step == step && d.attempt == body.attempt && d.agent_id == agent_id);
    let Some(dispatch) = expected.cloned() else {
        let waiting = run.dispatched.as_ref().map_or("nothing".to_owned(), |d| {
            format!("{} attempt {} from {}", d.step, d.attempt, d.agent_id)
        });
        return refuse(
            format!(
                "late or unexpected {step} attempt {} from {agent_id}; waiting for {waiting}",
                body.attempt
            ),
            NOT_EXPECTED,
        );
    };
    if !signature_ok(&agent.public_key) {
        return refuse(format!("signature of agent {agent_id} does not verify"), BAD_SIGNATURE);
    }
    Ok(dispatch)
}
