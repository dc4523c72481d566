//! Promotion lines in the state machine: a wave goes stage by stage after each soak (log time),
//! a failing stage halts the line, a first-stage firing during a soak queues, halts hold runs
//! and steps, break-glass passes.

use dsops_proto::ErrorCode;
use dsops_proto::domain::StepOutcome::{Refused, Succeeded};

use crate::test_world::{World, spec, started};
use crate::{Command, GateAction, GateVerdict, HaltKind, Outcome, PromotionRef, RunPhase, RunSpec};

const SOAK: u64 = 600_000;
const STAGES: [&str; 3] = ["dev/K", "staging/K", "production/K"];

fn staged(stage: u32, gated: bool) -> RunSpec {
    RunSpec {
        promotion: Some(PromotionRef {
            line: "K".into(),
            stage,
            stages: STAGES.iter().map(|s| s.to_string()).collect(),
            soak_ms: SOAK,
            stage_gates: if gated {
                vec![Vec::new(), vec!["api".into()], Vec::new()]
            } else {
                Vec::new()
            },
        }),
        ..spec("random")
    }
}

fn request(world: &mut World, stage: u32) -> Outcome {
    let env = STAGES[stage as usize].split('/').next().unwrap();
    world.request_for(env, "K", staged(stage, false), false)
}

/// A request of a line whose staging stage has gate `api`.
fn request_gated(world: &mut World, stage: u32) -> Outcome {
    let env = STAGES[stage as usize].split('/').next().unwrap();
    world.request_for(env, "K", staged(stage, true), false)
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
    let glass = started(world.request_for("staging", "K", staged(1, false), true));
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

/// A probe of check `api` signed by `key` (the world's agent key unless another is given).
fn probe(
    world: &mut World,
    id: &str,
    outcome: &str,
    key: Option<&ed25519_dalek::SigningKey>,
) -> Outcome {
    let body = serde_json::json!({
        "id": id, "check": "api", "outcome": outcome, "detail": format!("status for {id}"), "at_ms": world.now,
    })
    .to_string();
    let key = key.cloned().unwrap_or_else(|| world.key.clone());
    let signature = ed25519_dalek::Signer::sign(&key, body.as_bytes());
    world.apply(Command::RecordHealth {
        agent_id: "agent-1".into(),
        body_hex: dsops_proto::hex(body.as_bytes()),
        signature_hex: dsops_proto::hex(&signature.to_bytes()),
        segment: "default".into(),
        failures: 2,
        on_fail: GateAction::Halt,
        on_inconclusive: GateAction::Wait,
    })
}

#[test]
fn gates_hold_a_stage_until_they_pass_and_a_failing_gate_halts_the_line() {
    let mut world = World::new();
    let dev = started(request_gated(&mut world, 0));
    complete(&mut world, &dev);
    world.now += SOAK;
    let held = request_gated(&mut world, 1);
    assert!(
        matches!(&held, Outcome::Rejected { message, .. } if message.contains("waiting for gate api (no verdict yet)")),
        "{held:?}"
    );
    // Forged, or from another segment's rules: refused, nothing recorded.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    assert_eq!(code(probe(&mut world, "p1", "pass", Some(&stranger))), ErrorCode::PermissionDenied);
    assert!(world.state.gates.is_empty());
    assert!(matches!(
        probe(&mut world, "p1", "pass", None),
        Outcome::GateRecorded { verdict: GateVerdict::Pass, .. }
    ));
    world.now += 1;
    assert_eq!(
        code(probe(&mut world, "p1", "pass", None)),
        ErrorCode::FailedPrecondition,
        "a probe counts once"
    );
    let staging = started(request_gated(&mut world, 1));
    complete(&mut world, &staging);
    // Through staging's soak `api` fails: once is not enough (failures: 2) but makes production wait.
    world.now += 1;
    assert!(matches!(
        probe(&mut world, "p2", "fail", None),
        Outcome::GateRecorded { verdict: GateVerdict::Inconclusive, .. }
    ));
    world.now += SOAK;
    let waiting = request_gated(&mut world, 2);
    assert!(
        matches!(&waiting, Outcome::Rejected { message, .. } if message.contains("waiting for gate api (inconclusive")),
        "{waiting:?}"
    );
    assert!(world.state.promotions["K"].halted.is_none());
    world.now += 1;
    assert!(matches!(
        probe(&mut world, "p3", "fail", None),
        Outcome::GateRecorded { verdict: GateVerdict::Fail, .. }
    ));
    let halt = world.state.promotions["K"].halted.clone().expect("halted by the gate");
    assert_eq!(halt.kind, HaltKind::Gate);
    assert!(halt.reason.contains("gate api fail: status for p3"), "{}", halt.reason);
    assert!(actions(&world).contains(&"promotion.halted".to_owned()));
    let events: Vec<String> = world
        .state
        .audit
        .recent()
        .filter(|e| e.action.starts_with("gate."))
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(events, ["gate.pass", "gate.inconclusive", "gate.fail"]);
}
