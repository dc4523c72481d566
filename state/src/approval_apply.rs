//! Applying approval commands: an operator's decision, an expiry, a plan resolved again after
//! a configuration change; and the reviews breaking glass opens. Every rule is judged here, in log time, so every node agrees:
//! the requester never counts, each person counts once per round, only the plan digest of the
//! current round can be approved, a request past its expiry cannot be, and one denial ends the
//! run. (The decision's signature is verified by the leader before it proposes the command.)

use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;

use super::run_apply::enter;
use super::run_finish::finish;
use super::{
    ApplyContext, ApprovalDecision, ApprovalRule, Outcome, Request, RunPhase, RunSpec, State,
    StepKind,
};

/// The largest certificate a decision may carry.
const MAX_CERTIFICATE: usize = 8 * 1024;

/// Whether `operator` counts as an approver of a run in `env` under `rule`: named in it, or
/// holding the role a `role:<role>` entry names (in `env` or everywhere; admin holds every role).
pub fn eligible(state: &State, rule: &ApprovalRule, env: &str, operator: &str) -> bool {
    let approve = Permission::Approve { env: env.to_owned() };
    rule.approvers.iter().any(|entry| match entry.strip_prefix("role:") {
        Some("approver") => state.operator_permits(operator, &approve).is_ok(),
        Some(role) => state.operators.get(operator).is_some_and(|o| {
            o.grants.iter().any(|g| {
                (g.role.name() == role && g.env.as_deref().is_none_or(|own| own == env))
                    || g.role == dsops_proto::domain::OperatorRole::Admin
            })
        }),
        None => entry == operator && state.operator_permits(operator, &approve).is_ok(),
    })
}

/// Records a decision; a denial ends the run, the last approval needed lets it start.
pub(super) fn decide(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    run_id: &str,
    decision: &ApprovalDecision,
) -> Outcome {
    let now = request.proposed_at_ms;
    let version = state.config_version();
    let Some(run) = state.runs.get(run_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no run {run_id}"));
    };
    let (Some(approval), Some(rule)) = (&run.approval, &run.spec.approval) else {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} needs no approval"),
        );
    };
    let who = &decision.operator;
    let refusal = if run.phase != RunPhase::AwaitingApproval {
        Some((
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is {}, not awaiting approval", run.phase),
        ))
    } else if now >= approval.expires_at_ms {
        Some((
            ErrorCode::FailedPrecondition,
            format!("the approval request of run {run_id} has expired"),
        ))
    } else if run.spec.config_version != version {
        Some((
            ErrorCode::FailedPrecondition,
            format!(
                "the configuration changed to version {version}; the plan of run {run_id} is being resolved again: review it and decide again"
            ),
        ))
    } else if decision.round != approval.round || decision.plan_digest != approval.plan_digest {
        Some((
            ErrorCode::FailedPrecondition,
            format!(
                "the plan of run {run_id} changed (round {}, plan {}): review it and decide again",
                approval.round, approval.plan_digest
            ),
        ))
    } else if *who == run.requested_by {
        Some((
            ErrorCode::PermissionDenied,
            format!("{who} requested run {run_id} and cannot decide on it"),
        ))
    } else if approval.decisions.iter().any(|d| d.operator == *who) {
        Some((ErrorCode::AlreadyExists, format!("{who} already decided on run {run_id}")))
    } else if !eligible(state, rule, &run.env, who) {
        Some((
            ErrorCode::PermissionDenied,
            format!(
                "operator {who} is not among the approvers of run {run_id} ({})",
                rule.approvers.join(", ")
            ),
        ))
    } else if decision.reason.len() > dsops_proto::domain::MAX_REASON
        || decision.certificate_pem.len() > MAX_CERTIFICATE
        || decision.signature_hex.len() > 512
        || (!decision.approve && decision.reason.trim().is_empty())
    {
        Some((
            ErrorCode::InvalidArgument,
            "a decision carries a reason (required to deny) of at most 1 KiB, a signature and a certificate".to_owned(),
        ))
    } else {
        None
    };
    if let Some((code, message)) = refusal {
        return Outcome::rejected(code, message);
    }
    let required = rule.required;
    let secret = run.secret();
    let mut recorded = decision.clone();
    recorded.recorded_at_ms = now;
    let run = state.runs.get_mut(run_id).expect("checked above");
    let approval = run.approval.as_mut().expect("checked above");
    approval.decisions.push(recorded);
    let approvals: Vec<String> =
        approval.decisions.iter().filter(|d| d.approve).map(|d| d.operator.clone()).collect();
    let (action, detail) = if decision.approve {
        (
            "approval.approved",
            format!("run {run_id}: {who} approved ({}/{required})", approvals.len()),
        )
    } else {
        ("approval.denied", format!("run {run_id}: {who} denied: {}", decision.reason))
    };
    state.audit.append(ctx.index, now, who, action, &secret, &detail);
    if !decision.approve {
        let run = state.runs.get_mut(run_id).expect("checked above");
        run.last_error = format!("denied by {who}: {}", decision.reason);
        enter(run, RunPhase::Denied, now);
        finish(state, run_id, now, ctx, who);
    } else if approvals.len() as u32 >= required {
        let run = state.runs.get_mut(run_id).expect("checked above");
        if let Some(approval) = run.approval.as_mut() {
            approval.granted_at_ms = Some(now);
        }
        enter(run, RunPhase::Requested, now);
        run.step = Some(StepKind::Stage);
        run.not_before_ms = now;
        state.index_run(run_id);
        state.audit.append(
            ctx.index,
            now,
            who,
            "approval.granted",
            &secret,
            &format!("run {run_id} approved by {}; it starts", approvals.join(", ")),
        );
    }
    let phase = state.runs.get(run_id).map_or(RunPhase::Denied, |r| r.phase);
    Outcome::ApprovalRecorded {
        run_id: run_id.to_owned(),
        phase,
        approvals: approvals.len() as u32,
        required,
    }
}

/// Ends a run whose approval request expired (judged in log time).
pub(super) fn expire(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    run_id: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let Some(run) = state.runs.get_mut(run_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no run {run_id}"));
    };
    let Some(approval) = &run.approval else {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} needs no approval"),
        );
    };
    if run.phase != RunPhase::AwaitingApproval || now < approval.expires_at_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "run {run_id} is {} and its approval request expires at {}",
                run.phase, approval.expires_at_ms
            ),
        );
    }
    let approvals = approval.decisions.iter().filter(|d| d.approve).count();
    let required = run.spec.approval.as_ref().map_or(0, |r| r.required);
    run.last_error = format!("not approved in time ({approvals} of {required} approvals)");
    enter(run, RunPhase::Expired, now);
    finish(state, run_id, now, ctx, &request.actor);
    Outcome::RunUpdated { run_id: run_id.to_owned(), phase: RunPhase::Expired }
}

/// Takes the plan resolved again under the current configuration (after a change reset the
/// decisions): the run waits under it, or — when the configuration no longer rotates the
/// secret (`spec` is `None`) — ends `Expired` with `reason`. A plan that no longer needs
/// approval starts the run.
pub(super) fn replan(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    run_id: &str,
    spec: Option<&RunSpec>,
    reason: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let version = state.config_version();
    let Some(run) = state.runs.get_mut(run_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no run {run_id}"));
    };
    if run.phase != RunPhase::AwaitingApproval {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("run {run_id} is {}", run.phase),
        );
    }
    let secret = run.secret();
    let Some(spec) = spec else {
        run.last_error = format!("the configuration no longer allows this run: {reason}");
        enter(run, RunPhase::Expired, now);
        finish(state, run_id, now, ctx, &request.actor);
        return Outcome::RunUpdated { run_id: run_id.to_owned(), phase: RunPhase::Expired };
    };
    if spec.config_version != version {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "the plan was resolved from version {}, the current is {version}",
                spec.config_version
            ),
        );
    }
    let digest = spec.plan_digest(&run.env, &run.key, run.restore_previous);
    run.spec = spec.clone();
    let detail = match (&spec.approval, run.approval.as_mut()) {
        (Some(_), Some(approval)) => {
            approval.plan_digest = digest.clone();
            format!("run {run_id}: plan of version {version} is {digest}; decisions start again")
        }
        _ => {
            enter(run, RunPhase::Requested, now);
            run.step = Some(StepKind::Stage);
            run.not_before_ms = now;
            format!("run {run_id}: version {version} requires no approval; it starts")
        }
    };
    state.index_run(run_id);
    state.audit.append(ctx.index, now, &request.actor, "approval.replanned", &secret, &detail);
    Outcome::RunUpdated { run_id: run_id.to_owned(), phase: state.runs[run_id].phase }
}

/// After a new configuration version is stored: every run awaiting approval starts a new
/// round (its decisions are kept as evidence, no longer counted) until its plan is resolved
/// again under the new version.
pub(super) fn configuration_changed(state: &mut State, request: &Request, ctx: ApplyContext) {
    let now = request.proposed_at_ms;
    let version = state.config_version();
    let waiting: Vec<String> = state
        .active_runs
        .iter()
        .filter(|id| state.runs.get(*id).is_some_and(|r| r.phase == RunPhase::AwaitingApproval))
        .cloned()
        .collect();
    for run_id in waiting {
        let run = state.runs.get_mut(&run_id).expect("listed above");
        let secret = run.secret();
        let Some(approval) = run.approval.as_mut() else { continue };
        let counted = approval.decisions.len();
        approval.round += 1;
        approval.past.append(&mut approval.decisions);
        let excess = approval.past.len().saturating_sub(super::MAX_PAST_DECISIONS);
        approval.past.drain(..excess);
        let detail = format!(
            "run {run_id}: configuration version {version} stored; round {} begins ({counted} decision(s) no longer count)",
            approval.round
        );
        state.audit.append(ctx.index, now, &request.actor, "approval.reset", &secret, &detail);
    }
}

/// Opens the review of a run started by breaking glass (the run exists: it just started).
pub(super) fn open_review(state: &mut State, request: &Request, ctx: ApplyContext, run_id: &str) {
    let now = request.proposed_at_ms;
    let Some(run) = state.runs.get(run_id) else { return };
    let id = format!("rv-{}", ctx.index);
    let review = super::Review {
        id: id.clone(),
        run_id: run_id.to_owned(),
        env: run.env.clone(),
        key: run.key.clone(),
        opened_by: request.actor.clone(),
        reason: run.reason.clone(),
        opened_at_ms: now,
        deadline_ms: now.saturating_add(super::REVIEW_DEADLINE_MS),
        overdue_at_ms: None,
        closed_by: None,
        closed_at_ms: None,
        note: String::new(),
    };
    let secret = run.secret();
    let detail = format!(
        "run {run_id} started past approval and maintenance windows: {}; review {id} due by {}",
        run.reason, review.deadline_ms
    );
    state.reviews.insert(id, review);
    state.audit.append(ctx.index, now, &request.actor, "breakglass.used", &secret, &detail);
}

/// Closes a review: by someone other than the operator who broke glass, with a note.
pub(super) fn close_review(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    review_id: &str,
    note: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let who = &request.actor;
    let Some(review) = state.reviews.get_mut(review_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no review {review_id}"));
    };
    if let Some(by) = &review.closed_by {
        return Outcome::rejected(
            ErrorCode::AlreadyExists,
            format!("review {review_id} was closed by {by}"),
        );
    }
    if *who == review.opened_by {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("{who} broke glass in run {} and cannot close its review", review.run_id),
        );
    }
    if note.trim().is_empty() || note.len() > dsops_proto::domain::MAX_REASON {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "a review closes with a note of 1 byte to 1 KiB",
        );
    }
    review.closed_by = Some(who.clone());
    review.closed_at_ms = Some(now);
    review.note = note.to_owned();
    let subject = format!("{}/{}", review.env, review.key);
    let detail = format!("review {review_id} of run {} closed: {note}", review.run_id);
    state.audit.append(ctx.index, now, who, "review.closed", &subject, &detail);
    // Closed reviews beyond the newest CLOSED_REVIEWS_KEPT go (ids grow with the log index).
    let closed: Vec<String> = state
        .reviews
        .iter()
        .filter(|(_, r)| r.closed_by.is_some())
        .map(|(id, r)| (r.closed_at_ms.unwrap_or(0), id.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let excess = closed.len().saturating_sub(super::CLOSED_REVIEWS_KEPT);
    for id in closed.into_iter().take(excess) {
        state.reviews.remove(&id);
    }
    Outcome::ReviewUpdated { review_id: review_id.to_owned() }
}

/// Marks an open review past its deadline (in log time), once.
pub(super) fn review_overdue(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    review_id: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let Some(review) = state.reviews.get_mut(review_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no review {review_id}"));
    };
    if review.closed_by.is_some() || review.overdue_at_ms.is_some() || now < review.deadline_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "review {review_id} is closed, already overdue, or not due before {}",
                review.deadline_ms
            ),
        );
    }
    review.overdue_at_ms = Some(now);
    let subject = format!("{}/{}", review.env, review.key);
    let detail = format!(
        "review {review_id} of run {} (glass broken by {}) is open past its deadline",
        review.run_id, review.opened_by
    );
    state.audit.append(ctx.index, now, &request.actor, "review.overdue", &subject, &detail);
    Outcome::ReviewUpdated { review_id: review_id.to_owned() }
}

#[cfg(test)]
#[path = "approval_tests.rs"]
mod tests;
