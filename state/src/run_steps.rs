//! What a step's result does to a run: the protocol's transitions, on the run alone (the
//! bookkeeping when a run ends is `run_finish::finish`).
//!
//! | result of | succeeded | not applied, retryable | indeterminate, timed out | refused |
//! |---|---|---|---|---|
//! | a step | next step | the step again (backoff) | a check of it | give up |
//! | a check | the checked step's success | the checked step again | the check again | give up |
//!
//! Giving up before promotion rolls back; after it, quarantines.

use dsops_proto::domain::StepResult;

use super::run_finish::finish;
use super::runs::{Run, RunPhase, StepKind, Transition, backoff_ms};
use super::{ApplyContext, State};

/// Enters `phase` at `now`, recording the transition.
pub(super) fn enter(run: &mut Run, phase: RunPhase, now: u64) {
    run.phase = phase;
    run.transitions.push(Transition { phase, at_ms: now });
}

/// What decides how long a retried step waits: the backoff's jitter (drawn by the proposer),
/// and the wait the target asked for in the receipt (0: none), whichever is longer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waits {
    pub(super) jitter_permille: u16,
    pub(super) retry_after_ms: u64,
}

/// Moves a run on after `result` of its current step.
pub(super) fn advance(
    state: &mut State,
    run_id: &str,
    result: StepResult,
    now: u64,
    waits: Waits,
    ctx: ApplyContext,
    actor: &str,
) {
    let run = state.runs.get_mut(run_id).expect("caller checked");
    run.dispatched = None;
    let Some(step) = run.step else { return };
    let finished = match (step, run.checked_step, result) {
        (StepKind::Check, Some(checked), StepResult::Succeeded) => success(run, checked, now),
        (StepKind::Check, Some(checked), StepResult::NotApplied) => {
            again(run, checked, None, now, waits)
        }
        (StepKind::Check, Some(checked), StepResult::Refused) => give_up(run, checked, now),
        (StepKind::Check, Some(checked), _) => {
            again(run, StepKind::Check, Some(checked), now, waits)
        }
        (step, _, StepResult::Succeeded) => success(run, step, now),
        (step, _, StepResult::NotApplied | StepResult::Retryable) => {
            again(run, step, None, now, waits)
        }
        (step, _, StepResult::Indeterminate | StepResult::TimedOut) => {
            again(run, StepKind::Check, Some(step), now, waits)
        }
        (step, _, StepResult::Refused) => give_up(run, step, now),
    };
    if finished {
        finish(state, run_id, now, ctx, actor);
    }
}

/// The step's effect is in place. Returns whether the run is over.
fn success(run: &mut Run, step: StepKind, now: u64) -> bool {
    run.attempt = 1;
    run.checked_step = None;
    run.not_before_ms = now;
    let (phase, next) = match step {
        StepKind::Stage if run.spec.has_target() => (RunPhase::Staged, Some(StepKind::Apply)),
        StepKind::Stage => (RunPhase::Staged, Some(StepKind::Promote)),
        StepKind::Apply => (RunPhase::Applied, Some(StepKind::Verify)),
        StepKind::Verify => (RunPhase::Verified, Some(StepKind::Promote)),
        StepKind::Promote if run.spec.has_retire() => {
            run.not_before_ms = now.saturating_add(run.spec.grace_ms);
            (RunPhase::Promoted, Some(StepKind::Retire))
        }
        StepKind::Promote => {
            enter(run, RunPhase::Promoted, now);
            (RunPhase::Completed, None)
        }
        StepKind::Retire => {
            enter(run, RunPhase::Retired, now);
            (RunPhase::Completed, None)
        }
        StepKind::Rollback => (RunPhase::RolledBack, None),
        StepKind::Check => (run.phase, run.step),
    };
    enter(run, phase, now);
    run.step = next;
    next.is_none()
}

/// Tries `step` again (or checks `checked`) after a backoff, unless attempts are exhausted.
fn again(run: &mut Run, step: StepKind, checked: Option<StepKind>, now: u64, waits: Waits) -> bool {
    let logical = checked.unwrap_or(step);
    if run.attempt >= run.spec.max_attempts.max(1) {
        return give_up(run, logical, now);
    }
    run.attempt += 1;
    run.step = Some(step);
    run.checked_step = checked;
    let wait = backoff_ms(run.attempt, waits.jitter_permille).max(waits.retry_after_ms);
    run.not_before_ms = now.saturating_add(wait);
    false
}

/// Attempts are exhausted (or the agent refused): roll back before promotion, quarantine after.
fn give_up(run: &mut Run, step: StepKind, now: u64) -> bool {
    run.attempt = 1;
    run.checked_step = None;
    run.not_before_ms = now;
    match step {
        StepKind::Stage | StepKind::Apply | StepKind::Verify => {
            enter(run, RunPhase::RollingBack, now);
            run.step = Some(StepKind::Rollback);
            false
        }
        StepKind::Promote | StepKind::Retire | StepKind::Rollback | StepKind::Check => {
            enter(run, RunPhase::Quarantined, now);
            run.step = None;
            true
        }
    }
}
