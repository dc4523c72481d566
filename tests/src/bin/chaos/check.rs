//! The checker's judgements on the final state: receipts, approvals, audit chains.

use std::collections::BTreeMap;

use dsops_state::{Run, RunPhase, State};

/// What the checker found.
#[derive(Default)]
pub struct Verdict {
    pub violations: Vec<String>,
}

impl Verdict {
    pub fn fail(&mut self, why: String) {
        eprintln!("VIOLATION: {why}");
        self.violations.push(why);
    }
}

/// A receipt's step: (step, the step it checks, attempt).
pub type StepKey = (String, Option<String>, u32);
/// What a receipt says happened: (outcome, value fingerprint).
pub type Effect = (String, Option<String>);

/// Receipts: one effect per (run, generation, step, attempt), every signature valid.
pub fn judge_receipts(runs: &BTreeMap<String, Run>, state: &State, verdict: &mut Verdict) -> usize {
    let mut checked = 0;
    for run in runs.values() {
        let mut seen: BTreeMap<StepKey, Effect> = BTreeMap::new();
        for receipt in &run.receipts {
            if receipt.body_hex.is_empty() {
                continue; // a time-out the control plane recorded, not a receipt
            }
            checked += 1;
            let key = (
                receipt.step.to_string(),
                receipt.checked_step.map(|s| s.to_string()),
                receipt.attempt,
            );
            let effect = (receipt.outcome.name().to_owned(), receipt.fingerprint.clone());
            if let Some(earlier) = seen.insert(key.clone(), effect.clone())
                && earlier != effect
            {
                verdict.fail(format!(
                    "run {} (generation {}): {key:?} answered twice: {earlier:?} then {effect:?}",
                    run.id, run.generation
                ));
            }
            let agent = state.agents.get(&receipt.agent_id);
            let valid = agent.is_some_and(|agent| {
                let key = dsops_proto::hex_decode(&agent.public_key)
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                let body = dsops_proto::hex_decode(&receipt.body_hex);
                let signature = dsops_proto::hex_decode(&receipt.signature_hex)
                    .and_then(|s| <[u8; 64]>::try_from(s).ok());
                match (key, body, signature) {
                    (Some(key), Some(body), Some(signature)) => {
                        let signed = dsops_proto::domain::SignedReceipt {
                            body: match prost::Message::decode(body.as_slice()).ok().and_then(
                                |w: dsops_proto::wire::common::ReceiptBody| w.try_into().ok(),
                            ) {
                                Some(body) => body,
                                None => return false,
                            },
                            body_bytes: body,
                            signature,
                        };
                        signed.verify(&key).is_ok()
                    }
                    _ => false,
                }
            });
            if !valid {
                verdict.fail(format!(
                    "run {}: the receipt of {} attempt {} by {} does not verify",
                    run.id, receipt.step, receipt.attempt, receipt.agent_id
                ));
            }
        }
    }
    checked
}

/// Approvals: a run of an environment that requires approval did something (a receipt) only
/// after enough distinct approvers other than its requester approved its plan, in its current
/// round, each decision's signature verifying with the certificate kept beside it; a denied
/// or expired run did nothing. Returns (runs approved and performed, denied, expired).
pub fn judge_approvals(
    runs: &BTreeMap<String, Run>,
    gated_env: &str,
    required: usize,
    verdict: &mut Verdict,
) -> (usize, usize, usize) {
    let (mut performed, mut denied, mut expired) = (0, 0, 0);
    for run in runs.values().filter(|r| r.env == gated_env) {
        let acted = run.receipts.iter().any(|r| !r.body_hex.is_empty());
        match run.phase {
            RunPhase::Denied | RunPhase::Expired => {
                if run.phase == RunPhase::Denied {
                    denied += 1;
                } else {
                    expired += 1;
                }
                if acted {
                    verdict.fail(format!(
                        "run {} was {} yet an agent acted on it",
                        run.id,
                        run.phase.name()
                    ));
                }
                continue;
            }
            _ if !acted => continue,
            _ => performed += 1,
        }
        let Some(approval) = &run.approval else {
            verdict.fail(format!("run {} of {gated_env} ran without an approval", run.id));
            continue;
        };
        let digest = run.spec.plan_digest(&run.env, &run.key, run.restore_previous);
        let mut approvers = std::collections::BTreeSet::new();
        for decision in &approval.decisions {
            let signature = dsops_proto::hex_decode(&decision.signature_hex).unwrap_or_default();
            let bytes = dsops_proto::domain::decision_bytes(
                &run.id,
                decision.round,
                &decision.plan_digest,
                decision.approve,
                decision.signed_at_ms,
                &decision.reason,
            );
            if dsops_identity::verify_message(&decision.certificate_pem, &bytes, &signature)
                .is_err()
            {
                verdict.fail(format!(
                    "run {}: {}'s decision does not verify with its certificate",
                    run.id, decision.operator
                ));
                continue;
            }
            if decision.approve
                && decision.round == approval.round
                && decision.plan_digest == digest
                && decision.operator != run.requested_by
            {
                approvers.insert(decision.operator.clone());
            }
        }
        if approvers.len() < required || approval.granted_at_ms.is_none() {
            verdict.fail(format!(
                "run {} of {gated_env} ran with {} valid approvals of {required} (granted: {:?})",
                run.id,
                approvers.len(),
                approval.granted_at_ms
            ));
        }
    }
    (performed, denied, expired)
}

/// Merges a node's view of `runs` into the history: a run only moves forward, so the copy
/// with more transitions and receipts is the later one. The state keeps the last
/// [`dsops_state::RUN_HISTORY`] runs per secret; the history keeps every run seen.
pub fn record(history: &mut BTreeMap<String, Run>, runs: impl Iterator<Item = Run>) {
    for run in runs {
        let progress =
            |r: &Run| (r.finished_at_ms.is_some(), r.transitions.len(), r.receipts.len());
        match history.get(&run.id) {
            Some(known) if progress(known) >= progress(&run) => {}
            _ => {
                history.insert(run.id.clone(), run);
            }
        }
    }
}
