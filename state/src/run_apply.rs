//! Applying run commands: requests, dispatches, receipts and time-outs. Pure, like the rest of
//! `apply`: the receipt's signature is checked here because Ed25519 verification needs neither a
//! clock nor I/O, so every node reaches the same verdict.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{SignedReceipt, StepResult};
use dsops_proto::wire::common as wire;

use super::receipt_judge::{MALFORMED, ReceiptRefusal, judge_receipt};
pub(super) use super::run_steps::enter;
use super::run_steps::{Waits, advance};
use super::runs::{
    AgentRecord, Dispatch, RUN_HISTORY, ReceiptRecord, Run, RunPhase, RunSpec, StepKind,
    Transition, secret_id,
};
use super::{ApplyContext, Outcome, Request, State};

/// Whether `public_key` is a hex Ed25519 public key.
pub(super) fn valid_public_key(public_key: &str) -> bool {
    dsops_proto::hex_decode(public_key)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .is_some_and(|key| ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok())
}

/// Registers (or re-keys) an agent.
pub(super) fn register_agent(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    agent_id: &str,
    segment: &str,
    public_key: &str,
) -> Outcome {
    if !valid_public_key(public_key) {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "public_key: not a hex Ed25519 public key",
        );
    }
    let now = request.proposed_at_ms;
    if let Some(existing) = state.agents.get(agent_id)
        && existing.revoked_at_ms.is_some()
    {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("agent {agent_id} is revoked"),
        );
    }
    let existing = state.agents.get(agent_id);
    let record = AgentRecord {
        agent_id: agent_id.to_owned(),
        segment: segment.to_owned(),
        public_key: public_key.to_owned(),
        registered_at_ms: existing.map_or(now, |a| a.registered_at_ms),
        revoked_at_ms: None,
        hostname: existing.map(|a| a.hostname.clone()).unwrap_or_default(),
        version: existing.map(|a| a.version.clone()).unwrap_or_default(),
        cert_not_after_ms: existing.and_then(|a| a.cert_not_after_ms),
    };
    if state.agents.get(agent_id) != Some(&record) {
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "agent.registered",
            agent_id,
            &format!("segment {segment}, key {public_key}"),
        );
        state.agents.insert(agent_id.to_owned(), record);
    }
    Outcome::AgentRegistered { agent_id: agent_id.to_owned() }
}

/// Starts a run for a secret, unless one is in flight.
#[allow(clippy::too_many_arguments)]
pub(super) fn request_run(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    run_id: &str,
    env: &str,
    key: &str,
    spec: &RunSpec,
    restore_previous: bool,
    reason: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let id = secret_id(env, key);
    if state.runs.contains_key(run_id) {
        return Outcome::rejected(ErrorCode::AlreadyExists, format!("run {run_id} already exists"));
    }
    let secret = state.secrets.entry(id.clone()).or_default();
    if let Some(active) = &secret.active_run {
        let phase = state.runs.get(active).map_or("unknown", |r| r.phase.name());
        return Outcome::rejected(
            ErrorCode::Conflict,
            format!("{id}: run {active} is in flight ({phase})"),
        );
    }
    if restore_previous && secret.last_rotated_at_ms.is_none() {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("{id}: no completed rotation to roll back"),
        );
    }
    secret.generation += 1;
    secret.active_run = Some(run_id.to_owned());
    secret.history.push_back(run_id.to_owned());
    let generation = secret.generation;
    let mut dropped = Vec::new();
    while secret.history.len() > RUN_HISTORY {
        dropped.extend(secret.history.pop_front());
    }
    for old in dropped {
        state.runs.remove(&old);
    }
    // A run that needs approval waits without a step: nothing indexes it for dispatch.
    let approval = spec.approval.as_ref().map(|rule| super::RunApproval {
        expires_at_ms: now.saturating_add(rule.expires_ms),
        round: 0,
        plan_digest: spec.plan_digest(env, key, restore_previous),
        decisions: Vec::new(),
        past: Vec::new(),
        granted_at_ms: None,
    });
    let phase = if approval.is_some() { RunPhase::AwaitingApproval } else { RunPhase::Requested };
    let run = Run {
        id: run_id.to_owned(),
        env: env.to_owned(),
        key: key.to_owned(),
        generation,
        spec: spec.clone(),
        restore_previous,
        phase,
        step: approval.is_none().then_some(StepKind::Stage),
        checked_step: None,
        attempt: 1,
        not_before_ms: now,
        dispatched: None,
        new_fingerprint: None,
        receipts: Vec::new(),
        transitions: vec![Transition { phase, at_ms: now }],
        requested_by: request.actor.clone(),
        reason: reason.to_owned(),
        last_error: String::new(),
        requested_at_ms: now,
        finished_at_ms: None,
        approval,
        trace_parent: None,
        renew_at_ms: None,
    };
    let awaiting = run.approval.as_ref().map(|a| {
        let rule = spec.approval.as_ref().expect("set with the approval");
        format!(
            "run {run_id} awaits {} approval(s) from {} until {}; plan {}",
            rule.required,
            rule.approvers.join(", "),
            a.expires_at_ms,
            a.plan_digest
        )
    });
    state.runs.insert(run_id.to_owned(), run);
    state.active_runs.insert(run_id.to_owned());
    state.index_run(run_id);
    let what = if restore_previous { "rollback" } else { "rotation" };
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "run.requested",
        &id,
        &format!(
            "run {run_id}, generation {generation}, {what}, strategy {}, {reason}",
            spec.strategy
        ),
    );
    if let Some(detail) = awaiting {
        state.audit.append(ctx.index, now, &request.actor, "approval.requested", &id, &detail);
    }
    Outcome::RunStarted { run_id: run_id.to_owned(), generation }
}

/// A step sent to an agent, as recorded.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepSent<'a> {
    pub run_id: &'a str,
    pub generation: u64,
    pub step: StepKind,
    pub checked_step: Option<StepKind>,
    pub attempt: u32,
    pub agent_id: &'a str,
    pub deadline_ms: u64,
}

/// Records that a step was sent to an agent.
pub(super) fn dispatch(state: &mut State, request: &Request, sent: StepSent<'_>) -> Outcome {
    let StepSent { run_id, generation, step, checked_step, attempt, agent_id, deadline_ms } = sent;
    let now = request.proposed_at_ms;
    let Some(agent) = state.agents.get(agent_id).filter(|a| a.revoked_at_ms.is_none()) else {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("agent {agent_id} is not registered or revoked"),
        );
    };
    let agent_segment = agent.segment.clone();
    if let Some(halt) = state.runs.get(run_id).and_then(|run| state.step_held(run)) {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is held: halted by {} ({})", halt.by, halt.reason),
        );
    }
    if let Some(run) = state.runs.get(run_id)
        && run.phase == RunPhase::Requested
        && let Some(rate) = run.spec.rate_limit
        && state.rate_room(&run.spec, now) == 0
    {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "run {run_id}: {} runs of {} may start per {} ms, and that many have",
                rate.runs,
                run.spec.target_key(),
                rate.per_ms
            ),
        );
    }
    let Some(run) = state.runs.get_mut(run_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("run {run_id} does not exist"));
    };
    if run.generation != generation || run.phase.is_terminal() {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} generation {generation} is not in flight"),
        );
    }
    if run.step != Some(step) || run.checked_step != checked_step || run.attempt != attempt {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is not waiting for {step} attempt {attempt}"),
        );
    }
    if let Some(d) = &run.dispatched {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "run {run_id}: {} attempt {} is already with agent {}",
                d.step, d.attempt, d.agent_id
            ),
        );
    }
    if now < run.not_before_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is not due before {}", run.not_before_ms),
        );
    }
    if agent_segment != run.spec.segment {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!(
                "agent {agent_id} is in segment {agent_segment}, run {run_id} in {}",
                run.spec.segment
            ),
        );
    }
    state.unindex_run(run_id);
    let run = state.runs.get_mut(run_id).expect("checked above");
    run.dispatched =
        Some(Dispatch { step, checked_step, attempt, agent_id: agent_id.to_owned(), deadline_ms });
    let started = run.phase == RunPhase::Requested;
    if started {
        enter(run, RunPhase::Dispatched, now);
    }
    let phase = run.phase;
    if started {
        let spec = run.spec.clone();
        let (key, segment) = (spec.target_key(), spec.segment.clone());
        *state.target_load.entry(key).or_default() += 1;
        *state.segment_load.entry(segment).or_default() += 1;
        state.record_start(&spec, now);
    }
    state.index_run(run_id);
    Outcome::RunUpdated { run_id: run_id.to_owned(), phase }
}

/// A receipt as a `RecordReceipt` command carries it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReceiptInput<'a> {
    pub body_hex: &'a str,
    pub signature_hex: &'a str,
    pub jitter_permille: u16,
    pub verified_with: Option<&'a str>,
    pub next_agent: Option<&'a str>,
}

/// Checks and records a signed receipt, then moves the run on (and, with `next_agent`,
/// dispatches its next step when that is due at once).
pub(super) fn record_receipt(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    input: ReceiptInput<'_>,
) -> Outcome {
    let outcome = check_receipt(state, request, ctx, input);
    if let (Outcome::RunUpdated { run_id, .. }, Some(agent_id)) = (&outcome, input.next_agent) {
        dispatch_next(state, request, run_id, agent_id);
        let phase = state.runs.get(run_id).map_or(RunPhase::Completed, |r| r.phase);
        return Outcome::RunUpdated { run_id: run_id.clone(), phase };
    }
    outcome
}

/// Dispatches the run's next step to `agent_id` if it is due now and nothing holds it back;
/// otherwise leaves it for the dispatcher (a refusal here is not an error: the receipt stands).
fn dispatch_next(state: &mut State, request: &Request, run_id: &str, agent_id: &str) {
    let Some(run) = state.runs.get(run_id) else { return };
    let Some(step) = run.step else { return };
    if run.phase.is_terminal() || run.dispatched.is_some() {
        return;
    }
    let sent = StepSent {
        run_id,
        generation: run.generation,
        step,
        checked_step: run.checked_step,
        attempt: run.attempt,
        agent_id,
        deadline_ms: request.proposed_at_ms.saturating_add(run.spec.step_timeout_ms),
    };
    let _ = dispatch(state, request, sent);
}

fn check_receipt(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    input: ReceiptInput<'_>,
) -> Outcome {
    let ReceiptInput { body_hex, signature_hex, jitter_permille, verified_with, .. } = input;
    let now = request.proposed_at_ms;
    let refuse = |state: &mut State, refusal: ReceiptRefusal| {
        let ReceiptRefusal { subject, reason, for_agent } = refusal;
        state.audit.append(ctx.index, now, &request.actor, "receipt.refused", &subject, &reason);
        Outcome::ReceiptRefused { reason, for_agent: for_agent.to_owned() }
    };
    let malformed = |reason: String| ReceiptRefusal {
        subject: "receipt".to_owned(),
        reason,
        for_agent: MALFORMED,
    };
    let (Some(body), Some(signature)) =
        (dsops_proto::hex_decode(body_hex), dsops_proto::hex_decode(signature_hex))
    else {
        return refuse(state, malformed("not hex".to_owned()));
    };
    let receipt = match SignedReceipt::try_from(wire::Receipt { body, signature }) {
        Ok(receipt) => receipt,
        Err(error) => return refuse(state, malformed(format!("malformed: {error}"))),
    };
    // The proposer's check holds only for the key the agent has now.
    let judged = judge_receipt(state, &receipt, |public_key| {
        verified_with.is_some_and(|k| k == public_key) || {
            let key =
                dsops_proto::hex_decode(public_key).and_then(|k| <[u8; 32]>::try_from(k).ok());
            key.is_some_and(|key| receipt.verify(&key).is_ok())
        }
    });
    let dispatch = match judged {
        Ok(dispatch) => dispatch,
        Err(refusal) => return refuse(state, refusal),
    };
    let body = &receipt.body;
    let agent_id = body.agent_id.to_string();
    let run_id = body.run_id.to_string();
    let step = body.step;
    let result = StepResult::from(body.outcome);
    let fingerprint = body.value_fingerprint.map(|f| f.to_string());
    let record = ReceiptRecord {
        step,
        checked_step: dispatch.checked_step,
        attempt: body.attempt,
        outcome: result,
        agent_id: agent_id.clone(),
        fingerprint: fingerprint.clone(),
        detail: body.detail.clone(),
        at_ms: now,
        body_hex: body_hex.to_owned(),
        signature_hex: signature_hex.to_owned(),
    };
    let detail = format!(
        "{step}{} attempt {} by {agent_id}: {}{}{}",
        dispatch.checked_step.map(|s| format!(" of {s}")).unwrap_or_default(),
        body.attempt,
        result.name(),
        fingerprint.as_ref().map(|f| format!(", value {}", &f[..16])).unwrap_or_default(),
        if body.detail.is_empty() { String::new() } else { format!(" ({})", body.detail) },
    );
    let new_fingerprint = (step == StepKind::Stage && result == StepResult::Succeeded)
        .then_some(fingerprint)
        .flatten();
    let last_error = (result != StepResult::Succeeded)
        .then(|| format!("{step}: {} {}", result.name(), body.detail).trim().to_owned());
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    // Honoured only where they mean something: a wait after a failure, a renewal time from a
    // certificate's stage.
    let retry_after_ms = (result != StepResult::Succeeded)
        .then_some(body.retry_after)
        .flatten()
        .map_or(0, |wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    let renew_at_ms = (step == StepKind::Stage && result == StepResult::Succeeded)
        .then_some(body.renew_at)
        .flatten()
        .map(ms);
    let outcome = StepEnd {
        record,
        result,
        audit: detail,
        last_error,
        new_fingerprint,
        retry_after_ms,
        renew_at_ms,
    };
    conclude(state, request, ctx, &run_id, outcome, jitter_permille)
}

/// How a step ended, as [`conclude`] records it.
struct StepEnd {
    record: ReceiptRecord,
    result: StepResult,
    audit: String,
    last_error: Option<String>,
    new_fingerprint: Option<String>,
    /// The agent's target asked not to be called again for this long (0: it did not say).
    retry_after_ms: u64,
    /// A certificate's stage: when its issuer suggests renewing it.
    renew_at_ms: Option<u64>,
}

/// Records a step's end (receipt or time-out): the audit event, the evidence, then the run's
/// next move.
fn conclude(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    run_id: &str,
    step: StepEnd,
    jitter_permille: u16,
) -> Outcome {
    let now = request.proposed_at_ms;
    let subject = format!("run {run_id}");
    state.audit.append(ctx.index, now, &request.actor, "run.step", &subject, &step.audit);
    state.unindex_run(run_id);
    let run = state.runs.get_mut(run_id).expect("the caller checked the run exists");
    if let Some(fingerprint) = step.new_fingerprint {
        run.new_fingerprint = Some(fingerprint);
    }
    if let Some(error) = step.last_error {
        run.last_error = error;
    }
    if step.renew_at_ms.is_some() {
        run.renew_at_ms = step.renew_at_ms;
    }
    run.receipts.push(step.record);
    let waits = Waits { jitter_permille, retry_after_ms: step.retry_after_ms };
    advance(state, run_id, step.result, now, waits, ctx, &request.actor);
    state.index_run(run_id);
    let phase = state.runs.get(run_id).map_or(RunPhase::Completed, |r| r.phase);
    Outcome::RunUpdated { run_id: run_id.to_owned(), phase }
}

/// No receipt came before the deadline: the step's effect is unknown.
#[allow(clippy::too_many_arguments)]
/// A step given up without a receipt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expiry<'a> {
    pub run_id: &'a str,
    pub generation: u64,
    pub step: StepKind,
    pub attempt: u32,
    pub jitter_permille: u16,
    /// The agent lost its session (checked against the dispatch) rather than the deadline
    /// passing.
    pub lost_agent: Option<&'a str>,
}

pub(super) fn time_out(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    e: Expiry<'_>,
) -> Outcome {
    let Expiry { run_id, generation, step, attempt, jitter_permille, lost_agent } = e;
    let now = request.proposed_at_ms;
    let Some(run) = state.runs.get_mut(run_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("run {run_id} does not exist"));
    };
    let Some(dispatch) = run
        .dispatched
        .clone()
        .filter(|d| run.generation == generation && d.step == step && d.attempt == attempt)
    else {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is not waiting for {step} attempt {attempt}"),
        );
    };
    match lost_agent {
        Some(agent) if agent != dispatch.agent_id => {
            return Outcome::rejected(
                ErrorCode::FailedPrecondition,
                format!(
                    "run {run_id}: {step} attempt {attempt} was sent to {}, not {agent}",
                    dispatch.agent_id
                ),
            );
        }
        None if now < dispatch.deadline_ms => {
            return Outcome::rejected(
                ErrorCode::FailedPrecondition,
                format!("run {run_id}: {step} attempt {attempt} is not past its deadline"),
            );
        }
        _ => {}
    }
    let why = match lost_agent {
        Some(agent) => format!("agent {agent} lost its session"),
        None => "no receipt before the deadline".to_owned(),
    };
    let record = ReceiptRecord {
        step,
        checked_step: dispatch.checked_step,
        attempt,
        outcome: StepResult::TimedOut,
        agent_id: dispatch.agent_id.clone(),
        fingerprint: None,
        detail: why.clone(),
        at_ms: now,
        body_hex: String::new(),
        signature_hex: String::new(),
    };
    let outcome = StepEnd {
        record,
        result: StepResult::TimedOut,
        audit: format!("{step} attempt {attempt} by {}: {why}", dispatch.agent_id),
        last_error: Some(format!("{step}: {why}")),
        new_fingerprint: None,
        retry_after_ms: 0,
        renew_at_ms: None,
    };
    conclude(state, request, ctx, run_id, outcome, jitter_permille)
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
