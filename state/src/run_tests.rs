use std::time::UNIX_EPOCH;

use dsops_proto::domain::{AgentId, Fingerprint, Generation, ReceiptBody, RunId, Step};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::super::{AuditLog, Command, Outcome};
use super::*;

use crate::test_world::{World, spec, started};

use dsops_proto::domain::StepOutcome::{Indeterminate, NotApplied, Refused, Retryable, Succeeded};

#[test]
fn a_rotation_walks_every_phase() {
    let mut world = World::new();
    let id = started(world.request("two-key"));
    for _ in 0..5 {
        world.step(&id, Succeeded);
    }
    let run = world.run(&id);
    assert_eq!(
        world.phases(&id),
        [
            RunPhase::Requested,
            RunPhase::Dispatched,
            RunPhase::Staged,
            RunPhase::Applied,
            RunPhase::Verified,
            RunPhase::Promoted,
            RunPhase::Retired,
            RunPhase::Completed
        ]
    );
    assert_eq!(run.receipts.len(), 5);
    assert!(
        run.not_before_ms >= run.transitions[5].at_ms + 1_000,
        "retire waits for the grace period"
    );
    let secret = &world.state.secrets["dev/DB_PASSWORD"];
    assert_eq!(secret.active_run, None);
    assert_eq!(secret.last_phase, Some(RunPhase::Completed));
    assert_eq!(
        secret.current_fingerprint.as_deref(),
        Some(Fingerprint([7; 32]).to_string().as_str())
    );
    assert!(world.state.active_runs.is_empty());
    assert!(AuditLog::verify(&world.state.audit.events()).is_ok());
    assert!(world.state.audit.events().iter().any(|e| e.action == "run.completed"));
}

#[test]
fn random_secrets_skip_the_target_steps() {
    let mut world = World::new();
    let id = started(world.request("random"));
    world.step(&id, Succeeded);
    assert_eq!(world.run(&id).step, Some(StepKind::Promote));
    world.step(&id, Succeeded);
    assert_eq!(world.run(&id).phase, RunPhase::Completed);
}

#[test]
fn ended_runs_are_counted_by_strategy_and_phase_with_their_time_to_rotate() {
    let mut world = World::new();
    // Before the leader starts the counters (an older log replayed) nothing is counted.
    let before = started(world.request("random"));
    world.step(&before, Succeeded);
    world.step(&before, Succeeded);
    assert_eq!(world.run(&before).phase, RunPhase::Completed);
    assert!(world.state.run_counters.is_empty(), "{:?}", world.state.run_counters);

    world.apply(Command::StartRunCounters);
    let id = started(world.request("random"));
    world.now += 7_000;
    world.step(&id, Succeeded);
    world.step(&id, Succeeded);
    let counters = &world.state.run_counters;
    assert_eq!(counters.ended["random"]["Completed"], 1);
    // Requested to completed took a little over 7 s: the 15 s bucket.
    let at = crate::DURATION_BUCKETS_S.iter().position(|b| *b == 15).unwrap();
    assert_eq!(counters.duration_buckets[at], 1, "{counters:?}");
    assert_eq!(counters.duration_buckets.iter().sum::<u64>(), 1);
    assert!(counters.duration_sum_ms >= 7_000);
}

#[test]
fn immediate_has_nothing_to_retire() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    for _ in 0..4 {
        world.step(&id, Succeeded);
    }
    assert_eq!(world.run(&id).phase, RunPhase::Completed);
    assert!(world.run(&id).receipts.iter().all(|r| r.step != StepKind::Retire));
}

#[test]
fn a_receipt_dispatches_the_next_step_when_it_is_due_at_once() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let key = world.key.clone();
    let entries_before = world.index;
    // Stage, apply, verify, promote: one dispatch entry, then each receipt carries the next.
    for _ in 0..4 {
        world.now += 10;
        let body = world.body(&id, Succeeded);
        let outcome = world.submit_with(body, &key, None, Some("agent-1"));
        assert!(matches!(outcome, Outcome::RunUpdated { .. }), "{outcome:?}");
        if let Some(step) = world.run(&id).step {
            let dispatched = world.run(&id).dispatched.clone().expect("chained dispatch");
            assert_eq!((dispatched.step, dispatched.agent_id.as_str()), (step, "agent-1"));
            assert_eq!(dispatched.deadline_ms, world.now + 5_000, "timeout from the entry's time");
        }
    }
    assert_eq!(world.index - entries_before, 4, "no separate dispatch entries");
    assert_eq!(world.run(&id).phase, RunPhase::Completed);
    assert_eq!(world.run(&id).dispatched, None);
}

#[test]
fn a_receipt_leaves_a_step_that_is_not_due_or_an_unfit_agent_to_the_dispatcher() {
    let mut world = World::new();
    let key = world.key.clone();
    // A retryable failure backs off: the retry is not due at once.
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let body = world.body(&id, Retryable);
    world.submit_with(body, &key, None, Some("agent-1"));
    let run = world.run(&id);
    assert_eq!((run.step, run.attempt), (Some(StepKind::Stage), 2));
    assert_eq!(run.dispatched, None, "backoff first");
    // An agent that is not registered: the receipt stands, the step waits for the dispatcher.
    world.dispatch(&id);
    let body = world.body(&id, Succeeded);
    let outcome = world.submit_with(body, &key, None, Some("agent-nobody"));
    assert!(matches!(outcome, Outcome::RunUpdated { .. }), "{outcome:?}");
    assert_eq!(world.run(&id).step, Some(StepKind::Apply));
    assert_eq!(world.run(&id).dispatched, None);
}

#[test]
fn a_proposer_checked_signature_counts_only_for_the_agents_current_key() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let forger = SigningKey::from_bytes(&[3; 32]);
    let agent_key = dsops_proto::hex(&world.key.verifying_key().to_bytes());
    let forger_key = dsops_proto::hex(&forger.verifying_key().to_bytes());
    // Claimed checked with another key than the agent's: verified here, and refused.
    let body = world.body(&id, Succeeded);
    let outcome = world.submit_with(body, &forger, Some(forger_key), None);
    assert!(matches!(outcome, Outcome::ReceiptRefused { .. }), "{outcome:?}");
    assert_eq!(world.run(&id).step, Some(StepKind::Stage));
    // Checked by the proposer with the agent's key: accepted without a second check.
    let key = world.key.clone();
    let body = world.body(&id, Succeeded);
    let outcome = world.submit_with(body, &key, Some(agent_key), None);
    assert!(matches!(outcome, Outcome::RunUpdated { .. }), "{outcome:?}");
    assert_eq!(world.run(&id).step, Some(StepKind::Apply));
}

#[test]
fn one_run_per_secret_and_generations_increase() {
    let mut world = World::new();
    let first = started(world.request("immediate"));
    match world.request("immediate") {
        Outcome::Rejected { code, message } => {
            assert_eq!(code, dsops_proto::ErrorCode::Conflict);
            assert!(message.contains(&first), "{message}");
        }
        other => panic!("{other:?}"),
    }
    while world.run(&first).step.is_some() {
        world.step(&first, Succeeded);
    }
    let second = started(world.request("immediate"));
    assert_eq!(world.run(&second).generation, world.run(&first).generation + 1);
}

#[test]
fn bad_receipts_are_refused_recorded_and_change_nothing() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let before = world.run(&id).clone();
    let key = world.key.clone();
    let refused = |outcome: Outcome| match outcome {
        Outcome::ReceiptRefused { reason, .. } => reason,
        other => panic!("accepted: {other:?}"),
    };

    let mut stale = world.body(&id, Succeeded);
    stale.generation = Generation::parse(before.generation + 1, "g").unwrap();
    assert!(refused(world.submit(stale, &key)).contains("stale generation"));

    let forged = world.body(&id, Succeeded);
    assert!(
        refused(world.submit(forged, &SigningKey::from_bytes(&[1; 32])))
            .contains("does not verify")
    );

    let mut stranger = world.body(&id, Succeeded);
    stranger.agent_id = AgentId::parse("agent-x", "a").unwrap();
    assert!(refused(world.submit(stranger, &key)).contains("unknown agent"));

    let mut late = world.body(&id, Succeeded);
    late.attempt = 7;
    assert!(refused(world.submit(late, &key)).contains("late or unexpected"));

    let mut wrong_step = world.body(&id, Succeeded);
    wrong_step.step = Step::Promote;
    assert!(refused(world.submit(wrong_step, &key)).contains("late or unexpected"));

    // An agent of another segment.
    let other = SigningKey::from_bytes(&[3; 32]);
    world.apply(Command::RegisterAgent {
        agent_id: "agent-b".into(),
        segment: "prod".into(),
        public_key: dsops_proto::hex(&other.verifying_key().to_bytes()),
    });
    let mut foreign = world.body(&id, Succeeded);
    foreign.agent_id = AgentId::parse("agent-b", "a").unwrap();
    assert!(refused(world.submit(foreign, &other)).contains("segment"));

    assert_eq!(world.run(&id), &before);
    let refusals =
        world.state.audit.events().iter().filter(|e| e.action == "receipt.refused").count();
    assert_eq!(refusals, 6);
    // A genuine receipt still works after all that.
    let good = world.body(&id, Succeeded);
    assert!(matches!(
        world.submit(good, &key),
        Outcome::RunUpdated { phase: RunPhase::Staged, .. }
    ));
}

#[test]
fn failures_back_off_then_roll_back() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.step(&id, Succeeded); // staged
    world.step(&id, Retryable);
    let run = world.run(&id);
    assert_eq!((run.step, run.attempt), (Some(StepKind::Apply), 2));
    assert!(run.not_before_ms > world.now, "backoff");
    // Dispatching early is refused.
    let early = world.apply(Command::DispatchStep {
        run_id: id.clone(),
        generation: run.generation,
        step: StepKind::Apply,
        checked_step: None,
        attempt: 2,
        agent_id: "agent-1".into(),
        deadline_ms: world.now + 5_000,
    });
    assert!(matches!(early, Outcome::Rejected { .. }), "{early:?}");
    world.step(&id, NotApplied);
    world.step(&id, Retryable);
    assert_eq!(world.run(&id).phase, RunPhase::RollingBack);
    assert_eq!(world.run(&id).step, Some(StepKind::Rollback));
    world.step(&id, Succeeded);
    assert_eq!(world.run(&id).phase, RunPhase::RolledBack);
    assert_eq!(world.state.secrets["dev/DB_PASSWORD"].last_rotated_at_ms, None);
    assert!(world.run(&id).last_error.contains("apply"), "{}", world.run(&id).last_error);
}

#[test]
fn a_wait_the_target_asked_for_is_honoured_and_a_renewal_time_kept() {
    use std::time::Duration;
    let mut world = World::new();
    let id = started(world.request("two-key"));
    // The stage reports when the issuer suggests renewing (a certificate's ARI window).
    world.dispatch(&id);
    let mut body = world.body(&id, Succeeded);
    let renew_at = world.now + 40 * 86_400_000;
    body.renew_at = Some(UNIX_EPOCH + Duration::from_millis(renew_at));
    let key = world.key.clone();
    world.submit(body, &key);
    assert_eq!(world.run(&id).renew_at_ms, Some(renew_at));
    // A rate limit asking for two minutes: the next attempt waits that, not the 1 s backoff.
    world.dispatch(&id);
    let mut body = world.body(&id, Retryable);
    body.retry_after = Some(Duration::from_secs(120));
    let failed_at = world.now;
    world.submit(body, &key);
    let run = world.run(&id);
    assert_eq!((run.step, run.attempt), (Some(StepKind::Apply), 2));
    assert_eq!(run.not_before_ms, failed_at + 120_000);
    // A success carrying a wait waits nothing; a failure without one backs off as before.
    world.dispatch(&id);
    let mut body = world.body(&id, Succeeded);
    body.retry_after = Some(Duration::from_secs(600));
    body.renew_at = Some(UNIX_EPOCH + Duration::from_millis(1)); // not a stage: ignored
    world.submit(body, &key);
    assert_eq!(world.run(&id).not_before_ms, world.now);
    assert_eq!(world.run(&id).renew_at_ms, Some(renew_at));
    for _ in 0..3 {
        world.step(&id, Succeeded);
    }
    assert_eq!(world.run(&id).phase, RunPhase::Completed);
    assert_eq!(world.state.secrets["dev/DB_PASSWORD"].renew_at_ms, Some(renew_at));
    // The next completed run without a suggestion clears it.
    let next = started(world.request("two-key"));
    for _ in 0..5 {
        world.step(&next, Succeeded);
    }
    assert_eq!(world.state.secrets["dev/DB_PASSWORD"].renew_at_ms, None);
}

#[test]
fn a_first_rotation_whose_rollback_kept_its_value_records_it_as_current() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.step(&id, Succeeded); // staged
    world.step(&id, Succeeded); // applied
    world.step(&id, Refused); // verify: give up
    assert_eq!(world.run(&id).step, Some(StepKind::Rollback));
    // Nothing earlier to restore: the agent kept the staged value and names it.
    world.dispatch(&id);
    let mut body = world.body(&id, Succeeded);
    body.value_fingerprint = Some(Fingerprint([7; 32]));
    let key = world.key.clone();
    world.submit(body, &key);
    assert_eq!(world.run(&id).phase, RunPhase::RolledBack);
    let record = &world.state.secrets["dev/DB_PASSWORD"];
    assert_eq!(
        record.current_fingerprint.as_deref(),
        Some(Fingerprint([7; 32]).to_string().as_str())
    );
    assert!(record.last_rotated_at_ms.is_some());
    let events = world.state.audit.events();
    let ended = events.last().unwrap();
    assert!(ended.detail.contains("was kept as current"), "{}", ended.detail);
}

#[test]
fn indeterminate_outcomes_are_resolved_by_checking() {
    let mut world = World::new();
    let id = started(world.request_with(RunSpec { max_attempts: 5, ..spec("immediate") }));
    world.step(&id, Succeeded);
    world.step(&id, Indeterminate);
    assert_eq!(world.run(&id).step, Some(StepKind::Check));
    assert_eq!(world.run(&id).checked_step, Some(StepKind::Apply));
    // The check finds the change was not made: apply again.
    world.step(&id, NotApplied);
    assert_eq!((world.run(&id).step, world.run(&id).checked_step), (Some(StepKind::Apply), None));
    world.step(&id, Indeterminate);
    // This time the check finds it in place: move on without applying again.
    world.step(&id, Succeeded);
    assert_eq!(world.run(&id).phase, RunPhase::Applied);
    assert_eq!(world.run(&id).step, Some(StepKind::Verify));
}

#[test]
fn a_lost_agent_is_given_up_before_the_deadline_and_its_late_receipt_refused() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let run = world.run(&id).clone();
    let agent = run.dispatched.as_ref().unwrap().agent_id.clone();
    let lost = |world: &mut World, who: &str| {
        world.apply(Command::StepTimedOut {
            run_id: id.clone(),
            generation: run.generation,
            step: StepKind::Stage,
            attempt: 1,
            jitter_permille: 0,
            lost_agent: Some(who.to_owned()),
        })
    };
    assert!(matches!(lost(&mut world, "someone-else"), Outcome::Rejected { .. }));
    assert!(matches!(lost(&mut world, &agent), Outcome::RunUpdated { .. }), "no deadline wait");
    let run = world.run(&id);
    assert_eq!((run.step, run.checked_step), (Some(StepKind::Check), Some(StepKind::Stage)));
    assert!(run.last_error.contains("lost its session"), "{}", run.last_error);
}

#[test]
fn a_silent_agent_times_out_into_a_check() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    world.dispatch(&id);
    let run = world.run(&id).clone();
    let timeout = |world: &mut World| {
        world.apply(Command::StepTimedOut {
            run_id: id.clone(),
            generation: run.generation,
            step: StepKind::Stage,
            attempt: 1,
            jitter_permille: 0,
            lost_agent: None,
        })
    };
    assert!(matches!(timeout(&mut world), Outcome::Rejected { .. }), "not yet past the deadline");
    world.now += 5_000;
    assert!(matches!(timeout(&mut world), Outcome::RunUpdated { .. }));
    assert_eq!(world.run(&id).step, Some(StepKind::Check));
    // The first agent's late answer is refused: the step is no longer waiting for it.
    let key = world.key.clone();
    let mut late = world.body_for_dispatch(&id, &run);
    late.outcome = Succeeded;
    assert!(matches!(world.submit(late, &key), Outcome::ReceiptRefused { .. }));
}

impl World {
    fn body_for_dispatch(&self, id: &str, run: &Run) -> ReceiptBody {
        let dispatch = run.dispatched.clone().expect("dispatched");
        ReceiptBody {
            run_id: RunId::parse(id, "run_id").unwrap(),
            generation: Generation::parse(run.generation, "g").unwrap(),
            step: dispatch.step,
            target: "svc://pg?kind=db_password".into(),
            value_fingerprint: None,
            performed_at: UNIX_EPOCH,
            outcome: Succeeded,
            detail: String::new(),
            agent_id: AgentId::parse("agent-1", "agent_id").unwrap(),
            attempt: dispatch.attempt,
            retry_after: None,
            renew_at: None,
        }
    }
}

#[test]
fn failing_after_promotion_quarantines() {
    let mut world = World::new();
    let id = started(world.request("immediate"));
    for _ in 0..3 {
        world.step(&id, Succeeded);
    }
    world.step(&id, Refused);
    assert_eq!(world.run(&id).phase, RunPhase::Quarantined);
    assert_eq!(world.state.secrets["dev/DB_PASSWORD"].active_run, None);
    assert!(world.state.audit.events().iter().any(|e| e.action == "run.quarantined"));
}

fn outcome_strategy() -> impl Strategy<Value = dsops_proto::domain::StepOutcome> {
    prop_oneof![
        4 => Just(Succeeded),
        1 => Just(NotApplied),
        1 => Just(Retryable),
        1 => Just(Indeterminate),
        1 => Just(Refused),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever agents answer, every run ends (no endless loop) in one of the three terminal
    /// phases within a bounded number of steps, and Completed only after every step succeeded.
    #[test]
    fn every_run_ends(strategy in prop_oneof![Just("immediate"), Just("two-key"), Just("random")],
                      outcomes in proptest::collection::vec(outcome_strategy(), 1..40)) {
        let mut world = World::new();
        let id = started(world.request(strategy));
        let mut steps = 0;
        while world.run(&id).step.is_some() {
            let outcome = outcomes[steps % outcomes.len()];
            world.step(&id, outcome);
            steps += 1;
            // The dispatcher's indexes always match the runs they are derived from.
            let mut rebuilt = world.state.clone();
            rebuilt.rebuild_indexes();
            prop_assert_eq!(&rebuilt.ready, &world.state.ready);
            prop_assert_eq!(&rebuilt.deadlines, &world.state.deadlines);
            prop_assert_eq!(&rebuilt.target_load, &world.state.target_load);
            prop_assert_eq!(&rebuilt.segment_load, &world.state.segment_load);
            prop_assert_eq!(&rebuilt.queued, &world.state.queued);
            // At most 6 logical steps (incl. rollback), each at most max_attempts tries.
            prop_assert!(steps <= 6 * 3, "run did not end: {:?}", world.run(&id));
        }
        let run = world.run(&id);
        prop_assert!(run.phase.is_terminal());
        if run.phase == RunPhase::Completed {
            let succeeded: Vec<StepKind> = run.receipts.iter()
                .filter(|r| r.outcome == dsops_proto::domain::StepResult::Succeeded)
                .map(|r| r.checked_step.unwrap_or(r.step))
                .collect();
            let needed: &[StepKind] = match strategy {
                "random" => &[StepKind::Stage, StepKind::Promote],
                "immediate" => &[StepKind::Stage, StepKind::Apply, StepKind::Verify, StepKind::Promote],
                _ => &[StepKind::Stage, StepKind::Apply, StepKind::Verify, StepKind::Promote, StepKind::Retire],
            };
            prop_assert_eq!(succeeded, needed.to_vec());
        }
        prop_assert!(world.state.active_runs.is_empty());
        prop_assert!(world.state.ready.is_empty() && world.state.deadlines.is_empty());
        prop_assert!(world.state.target_load.is_empty() && world.state.queued.is_empty());
        prop_assert!(world.state.segment_load.is_empty());
        prop_assert!(AuditLog::verify(&world.state.audit.events()).is_ok());
    }
}
