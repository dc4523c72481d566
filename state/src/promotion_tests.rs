//! Promotion lines in the state machine: a wave goes stage by stage after each soak (log time),
//! a failing stage halts the line, a first-stage firing during a soak queues, halts hold runs
//! and steps, break-glass passes.

use dsops_proto::ErrorCode;
use dsops_proto::domain::StepOutcome::{Refused, Succeeded};

use crate::test_world::{World, spec, started};
use crate::{Command, HaltKind, Outcome, PromotionRef, RunPhase, RunSpec};

const SOAK: u64 = 600_000;
const STAGES: [&str; 3] = ["dev/K", "staging/K", "production/K"];

fn staged(stage: u32) -> RunSpec {
    RunSpec {
        promotion: Some(PromotionRef {
            line: "K".into(),
            stage,
            stages: STAGES.iter().map(|s| s.to_string()).collect(),
            soak_ms: SOAK,
        }),
        ..spec("random")
    }
}

fn request(world: &mut World, stage: u32) -> Outcome {
    let env = STAGES[stage as usize].split('/').next().unwrap();
    world.request_for(env, "K", staged(stage), false)
}

fn code(outcome: Outcome) -> ErrorCode {
    match outcome {
        Outcome::Rejected { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Random runs: stage, then promote.
fn complete(world: &mut World, id: &str) {
    world.step(id, Succeeded);
    world.step(id, Succeeded);
    assert_eq!(world.run(id).phase, RunPhase::Completed);
}

fn actions(world: &World) -> Vec<String> {
    world
        .state
        .audit
        .recent()
        .filter(|e| e.action.starts_with("promotion."))
        .map(|e| e.action.clone())
        .collect()
}

#[test]
fn a_wave_goes_stage_by_stage_each_after_its_soak_in_log_time() {
    let mut world = World::new();
    assert_eq!(code(request(&mut world, 1)), ErrorCode::FailedPrecondition, "no wave to join");
    let dev = started(request(&mut world, 0));
    assert_eq!(world.state.promotions["K"].wave, 1);
    assert_eq!(
        code(request(&mut world, 1)),
        ErrorCode::FailedPrecondition,
        "dev has not completed"
    );
    complete(&mut world, &dev);
    let until = world.state.promotions["K"].stages[0].soak_until_ms.expect("soaking");
    assert_eq!(until, world.now + SOAK);
    world.now = until - 1;
    let early = request(&mut world, 1);
    assert!(
        matches!(&early, Outcome::Rejected { message, .. } if message.contains("soaks until")),
        "{early:?}"
    );
    world.now = until;
    let staging = started(request(&mut world, 1));
    assert_eq!(code(request(&mut world, 1)), ErrorCode::Conflict, "once per wave");
    complete(&mut world, &staging);
    world.now += SOAK;
    let production = started(request(&mut world, 2));
    complete(&mut world, &production);
    let line = &world.state.promotions["K"];
    assert!(line.finished_at_ms.is_some() && line.halted.is_none());
    assert_eq!(
        actions(&world),
        ["promotion.started", "promotion.soaking", "promotion.soaking", "promotion.completed"]
    );
    // A new wave starts from the first stage only.
    assert_eq!(code(request(&mut world, 1)), ErrorCode::FailedPrecondition);
    started(request(&mut world, 0));
    assert_eq!(world.state.promotions["K"].wave, 2);
}

#[test]
fn a_failing_stage_halts_the_line_until_an_operator_resumes_it() {
    let mut world = World::new();
    let dev = started(request(&mut world, 0));
    complete(&mut world, &dev);
    world.now += SOAK;
    let staging = started(request(&mut world, 1));
    world.step(&staging, Refused); // the agent refuses the stage step: the run rolls back
    world.step(&staging, Succeeded);
    assert_eq!(world.run(&staging).phase, RunPhase::RolledBack);
    let halt = world.state.promotions["K"].halted.clone().expect("halted");
    assert_eq!(halt.kind, HaltKind::Failed);
    assert!(halt.reason.contains("staging/K's run"), "{}", halt.reason);
    world.now += SOAK;
    let refused = request(&mut world, 2);
    assert!(
        matches!(&refused, Outcome::Rejected { message, .. } if message.contains("is halted")),
        "{refused:?}"
    );
    assert_eq!(
        code(request(&mut world, 0)),
        ErrorCode::FailedPrecondition,
        "no new wave while halted"
    );
    let empty =
        world.apply(Command::ResumePromotion { line: Some("K".into()), reason: " ".into() });
    assert_eq!(code(empty), ErrorCode::InvalidArgument, "a resume needs a reason");
    let resumed = world.apply(Command::ResumePromotion {
        line: Some("K".into()),
        reason: "fixed the grant".into(),
    });
    assert!(matches!(resumed, Outcome::PromotionUpdated { .. }), "{resumed:?}");
    started(request(&mut world, 0));
    assert_eq!(world.state.promotions["K"].wave, 2);
}

#[test]
fn a_first_stage_firing_during_a_soak_queues_and_never_restarts_the_clock() {
    let mut world = World::new();
    let dev = started(request(&mut world, 0));
    assert_eq!(code(request(&mut world, 0)), ErrorCode::Conflict, "dev is rotating");
    complete(&mut world, &dev);
    let until = world.state.promotions["K"].stages[0].soak_until_ms;
    world.now += 1_000;
    assert!(matches!(request(&mut world, 0), Outcome::WaveQueued { wave: 1, .. }));
    let line = &world.state.promotions["K"];
    assert_eq!(line.stages[0].soak_until_ms, until, "the soak clock stands");
    assert!(line.queued_at_ms.is_some());
    assert_eq!(world.state.secrets["dev/K"].active_run, None, "no run started");
}

#[test]
fn a_halt_holds_new_runs_and_steps_and_break_glass_passes() {
    let mut world = World::new();
    let dev = started(request(&mut world, 0));
    let halted = world
        .apply(Command::HaltPromotion { line: Some("K".into()), reason: "incident 42".into() });
    assert!(matches!(halted, Outcome::PromotionUpdated { .. }), "{halted:?}");
    let held = world.dispatch(&dev);
    assert!(
        matches!(&held, Outcome::Rejected { message, .. } if message.contains("is held")),
        "{held:?}"
    );
    let resumed =
        world.apply(Command::ResumePromotion { line: Some("K".into()), reason: "over".into() });
    assert!(matches!(resumed, Outcome::PromotionUpdated { .. }));
    complete(&mut world, &dev);
    // --all holds every run, in a line or not; break-glass still starts.
    world.apply(Command::HaltPromotion { line: None, reason: "freeze".into() });
    let other = world.request_for("ops", "OTHER", spec("random"), false);
    assert!(
        matches!(&other, Outcome::Rejected { message, .. } if message.contains("every run is halted")),
        "{other:?}"
    );
    let glass = started(world.request_for("staging", "K", staged(1), true));
    assert_eq!(
        world.state.promotions["K"].stages[1].run_id.as_deref(),
        Some(glass.as_str()),
        "skips the soak"
    );
    assert_eq!(
        code(world.apply(Command::ResumePromotion { line: Some("K".into()), reason: "x".into() })),
        ErrorCode::FailedPrecondition
    );
    assert!(matches!(
        world.apply(Command::ResumePromotion { line: None, reason: "thaw".into() }),
        Outcome::PromotionUpdated { .. }
    ));
    assert!(world.state.halt_all.is_none());
}
