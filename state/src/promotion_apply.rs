//! Promotion lines as the state machine keeps them: a secret present in several stages of
//! `rotation.promotion` rotates as one *wave*, stage by stage. All times are log time, so a new
//! leader neither restarts a soak nor ends it early.
//!
//! ```text
//!  RequestRun(stage 0) ──▶ wave N: [dev: run] [staging: -] [production: -]
//!  run completes        ──▶ dev completed at T, soaks until T + soak
//!  RequestRun(stage 1)     refused before T + soak (the leader's promotion loop asks after it)
//!  a stage's run fails  ──▶ the wave ends, the line is halted until an operator resumes it
//!  RequestRun(stage 0) while the wave runs past its first stage ──▶ queued: a new wave after it
//! ```
//!
//! `HaltPromotion` stops a line (or every run, `--all`): no new run of it starts and no new
//! step of its runs is dispatched until `ResumePromotion`. Break-glass runs pass every check.

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use super::runs::{PromotionRef, Run, RunPhase};
use super::{ApplyContext, Outcome, Request, State};

/// How many lines the state keeps (one per promotion line of the configuration).
pub const MAX_PROMOTION_LINES: usize = 10_000;
/// The longest halt or resume reason.
pub const MAX_REASON: usize = 512;

/// A promotion line: its current (or last) wave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionLine {
    /// The wave number (0: none yet).
    pub wave: u64,
    /// The wave's stages, in order.
    pub stages: Vec<WaveStage>,
    /// When the wave started.
    pub started_at_ms: u64,
    /// When it ended (its last stage completed, or a stage's run failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// Why the line is stopped, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
    /// A first-stage start that came while the wave was past its first stage: a new wave
    /// starts once this one ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at_ms: Option<u64>,
}

impl PromotionLine {
    /// Whether a wave is under way.
    pub fn active(&self) -> bool {
        self.wave > 0 && self.finished_at_ms.is_none()
    }

    /// The gates a running, unhalted wave watches now: the gates of the stage soaking (or just
    /// done) before the next stage to start, and that next stage's own. Empty otherwise.
    pub fn watched_gates(&self) -> impl Iterator<Item = &String> {
        let next = (self.active() && self.halted.is_none())
            .then(|| self.stages.iter().position(|s| s.run_id.is_none()))
            .flatten();
        let soaking = next
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.stages.get(i))
            .filter(|s| s.ended.is_some());
        soaking.into_iter().chain(next.and_then(|n| self.stages.get(n))).flat_map(|s| &s.gates)
    }
}

/// One stage of a wave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveStage {
    /// The secret (`env/KEY`).
    pub secret: String,
    /// Its run in this wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When that run ended, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<(u64, RunPhase)>,
    /// Until when it soaks (its run completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_until_ms: Option<u64>,
    /// Its gates: checked before its run starts, and through its soak before the next stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<String>,
}

/// Why a line (or everything) is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// An operator stopped it, or a stage's run failed.
    pub kind: HaltKind,
    /// Why.
    pub reason: String,
    /// Who (an operator, or the actor that recorded the failure).
    pub by: String,
    /// When (log time).
    pub at_ms: u64,
}

/// What stopped a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltKind {
    /// `dsops promotion halt`: also holds the steps of its runs in flight.
    Operator,
    /// A stage's run did not complete: no later stage starts.
    Failed,
    /// A gate failed (its action was `halt`): no later stage starts.
    Gate,
}

impl State {
    /// The halt that holds `run`'s next step, if any (`--all`, or an operator's halt of its line).
    pub fn step_held(&self, run: &Run) -> Option<&Halt> {
        if let Some(all) = &self.halt_all {
            return Some(all);
        }
        let line = run.spec.promotion.as_ref()?;
        self.promotions
            .get(&line.line)
            .and_then(|l| l.halted.as_ref())
            .filter(|h| h.kind == HaltKind::Operator)
    }
}

/// What a run request of a line's stage may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Admission {
    /// Start, beginning a new wave.
    NewWave,
    /// Start as this stage of the wave under way.
    Stage,
    /// Start outside any wave (break-glass on a later stage with no wave under way).
    Outside,
    /// Do not start now: a new wave follows the one under way.
    Queue,
}

/// Whether a run of stage `p` may start now; `Err` is the refusal.
pub(super) fn admit(
    state: &State,
    request: &Request,
    p: &PromotionRef,
    break_glass: bool,
) -> Result<Admission, Outcome> {
    let now = request.proposed_at_ms;
    let stage = p.stage as usize;
    if stage >= p.stages.len() {
        return Err(Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("stage {stage} of line {} has only {} stages", p.line, p.stages.len()),
        ));
    }
    let line = state.promotions.get(&p.line);
    if line.is_none() && state.promotions.len() >= MAX_PROMOTION_LINES {
        return Err(Outcome::rejected(
            ErrorCode::ResourceExhausted,
            format!(
                "{MAX_PROMOTION_LINES} promotion lines are kept; line {} is one too many",
                p.line
            ),
        ));
    }
    let active = line.filter(|l| l.active());
    if break_glass {
        return Ok(match active {
            Some(l) if l.stages.get(stage).is_some_and(|s| s.run_id.is_none()) => Admission::Stage,
            Some(_) => Admission::Outside,
            None if stage == 0 => Admission::NewWave,
            None => Admission::Outside,
        });
    }
    if let Some(halt) = line.and_then(|l| l.halted.as_ref()) {
        return Err(Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "promotion line {} is halted ({}, by {}); `dsops promotion resume {} --reason …` lets it go on",
                p.line, halt.reason, halt.by, p.line
            ),
        ));
    }
    let Some(wave) = active else {
        if stage == 0 {
            return Ok(Admission::NewWave);
        }
        return Err(Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "{} is stage {} of promotion line {}: it rotates after {} in a wave, which none is under way to",
                p.stages[stage],
                stage + 1,
                p.line,
                p.stages[stage - 1]
            ),
        ));
    };
    if stage == 0 {
        // The first stage is done: a new wave follows this one (a firing never restarts a soak).
        return if wave.stages.first().is_some_and(|s| s.ended.is_some()) {
            Ok(Admission::Queue)
        } else {
            Err(Outcome::rejected(
                ErrorCode::Conflict,
                format!(
                    "wave {} of line {} is rotating {} already",
                    wave.wave, p.line, p.stages[0]
                ),
            ))
        };
    }
    // The configuration changed the line while this wave runs: its stages are the wave's.
    let Some(here) = wave.stages.get(stage) else {
        return Err(Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "wave {} of line {} has {} stages (the configuration changed since it started); a new wave follows it",
                wave.wave,
                p.line,
                wave.stages.len()
            ),
        ));
    };
    if here.run_id.is_some() {
        return Err(Outcome::rejected(
            ErrorCode::Conflict,
            format!(
                "wave {} of line {} has started {} already",
                wave.wave, p.line, p.stages[stage]
            ),
        ));
    }
    let previous = &wave.stages[stage - 1];
    match previous.soak_until_ms {
        Some(until) if now >= until => match super::gate_apply::gates_block(state, wave, stage) {
            None => Ok(Admission::Stage),
            Some(why) => Err(Outcome::rejected(
                ErrorCode::FailedPrecondition,
                format!("wave {} of line {}: {} {why}", wave.wave, p.line, p.stages[stage]),
            )),
        },
        Some(until) => Err(Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "wave {} of line {}: {} soaks until {until}; {} starts after it",
                wave.wave, p.line, previous.secret, p.stages[stage]
            ),
        )),
        None => Err(Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "wave {} of line {}: {} has not completed; {} starts after it and its soak",
                wave.wave, p.line, previous.secret, p.stages[stage]
            ),
        )),
    }
}

/// Records a first-stage start queued behind the wave under way.
pub(super) fn queue(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    p: &PromotionRef,
) -> Outcome {
    let now = request.proposed_at_ms;
    let line = state.promotions.entry(p.line.clone()).or_default();
    let wave = line.wave;
    if line.queued_at_ms.is_none() {
        line.queued_at_ms = Some(now);
        let detail = format!("a new wave of line {} follows wave {wave}", p.line);
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "promotion.queued",
            &p.stages[0],
            &detail,
        );
    }
    Outcome::WaveQueued { line: p.line.clone(), wave }
}

/// Records a started run in its line.
pub(super) fn started(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    p: &PromotionRef,
    admission: &Admission,
    run_id: &str,
) {
    let now = request.proposed_at_ms;
    let line = state.promotions.entry(p.line.clone()).or_default();
    match admission {
        Admission::NewWave => {
            line.wave += 1;
            line.stages = p
                .stages
                .iter()
                .enumerate()
                .map(|(i, secret)| WaveStage {
                    secret: secret.clone(),
                    gates: p.stage_gates.get(i).cloned().unwrap_or_default(),
                    ..WaveStage::default()
                })
                .collect();
            line.stages[0].run_id = Some(run_id.to_owned());
            line.started_at_ms = now;
            line.finished_at_ms = None;
            line.queued_at_ms = None;
            let detail = format!("wave {} of line {}: {}", line.wave, p.line, p.stages.join(" → "));
            state.audit.append(
                ctx.index,
                now,
                &request.actor,
                "promotion.started",
                &p.stages[0],
                &detail,
            );
        }
        Admission::Stage => {
            if let Some(stage) = line.stages.get_mut(p.stage as usize) {
                stage.run_id = Some(run_id.to_owned());
            }
        }
        Admission::Outside | Admission::Queue => {}
    }
}

/// A run of a line ended: its stage soaks (or the wave is done), or the wave ends and the line
/// halts.
pub(super) fn run_ended(state: &mut State, run_id: &str, now: u64, ctx: ApplyContext, actor: &str) {
    let Some(run) = state.runs.get(run_id) else { return };
    let Some(p) = run.spec.promotion.clone() else { return };
    let phase = run.phase;
    let error = run.last_error.clone();
    let Some(line) = state.promotions.get_mut(&p.line) else { return };
    let wave = line.wave;
    let Some(stage) = line
        .stages
        .get_mut(p.stage as usize)
        .filter(|s| s.run_id.as_deref() == Some(run_id) && s.ended.is_none())
    else {
        return;
    };
    stage.ended = Some((now, phase));
    let secret = stage.secret.clone();
    if phase == RunPhase::Completed {
        let until = now.saturating_add(p.soak_ms);
        stage.soak_until_ms = Some(until);
        let last = p.stage as usize + 1 == line.stages.len();
        let (action, detail) = if last {
            line.finished_at_ms = Some(now);
            (
                "promotion.completed",
                format!("wave {wave} of line {} completed: {}", p.line, p.stages.join(" → ")),
            )
        } else {
            let next = line.stages.get(p.stage as usize + 1).map_or("", |s| s.secret.as_str());
            (
                "promotion.soaking",
                format!(
                    "wave {wave} of line {}: {secret} completed; {next} may start once it has soaked {} s (until {})",
                    p.line,
                    p.soak_ms / 1000,
                    utc_text(until)
                ),
            )
        };
        state.audit.append(ctx.index, now, actor, action, &secret, &detail);
        return;
    }
    line.finished_at_ms = Some(now);
    let reason = format!("{secret}'s run {run_id} ended {}: {error}", phase.name());
    line.halted = Some(Halt {
        kind: HaltKind::Failed,
        reason: reason.clone(),
        by: actor.to_owned(),
        at_ms: now,
    });
    let detail = format!("wave {wave} of line {} stopped: {reason}; no later stage starts", p.line);
    state.audit.append(ctx.index, now, actor, "promotion.halted", &secret, &detail);
}

fn check_reason(reason: &str) -> Result<(), Outcome> {
    if reason.trim().is_empty() {
        return Err(Outcome::rejected(
            ErrorCode::InvalidArgument,
            "a halt or resume needs a reason",
        ));
    }
    if reason.len() > MAX_REASON {
        return Err(Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("the reason is longer than {MAX_REASON} bytes"),
        ));
    }
    Ok(())
}

/// Stops a line (`Some`) or everything (`None`).
pub(super) fn halt(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    line: Option<&str>,
    reason: &str,
) -> Outcome {
    if let Err(refusal) = check_reason(reason) {
        return refusal;
    }
    let now = request.proposed_at_ms;
    let halt = Halt {
        kind: HaltKind::Operator,
        reason: reason.to_owned(),
        by: request.actor.clone(),
        at_ms: now,
    };
    let subject = match line {
        None => {
            state.halt_all = Some(halt);
            "*".to_owned()
        }
        Some(name) => {
            if !state.promotions.contains_key(name) && state.promotions.len() >= MAX_PROMOTION_LINES
            {
                return Outcome::rejected(
                    ErrorCode::ResourceExhausted,
                    format!("{MAX_PROMOTION_LINES} promotion lines are kept"),
                );
            }
            state.promotions.entry(name.to_owned()).or_default().halted = Some(halt);
            name.to_owned()
        }
    };
    let detail = match line {
        None => format!("every run stopped: no new run or step starts ({reason})"),
        Some(name) => format!("line {name} stopped: no new run or step of it starts ({reason})"),
    };
    state.audit.append(ctx.index, now, &request.actor, "promotion.halted", &subject, &detail);
    Outcome::PromotionUpdated { line: subject }
}

/// Lets a line (`Some`) or everything (`None`) go on.
pub(super) fn resume(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    line: Option<&str>,
    reason: &str,
) -> Outcome {
    if let Err(refusal) = check_reason(reason) {
        return refusal;
    }
    let now = request.proposed_at_ms;
    let (subject, was) = match line {
        None => ("*".to_owned(), state.halt_all.take()),
        Some(name) => {
            (name.to_owned(), state.promotions.get_mut(name).and_then(|l| l.halted.take()))
        }
    };
    let Some(was) = was else {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            match line {
                None => "nothing is halted with --all".to_owned(),
                Some(name) => format!("promotion line {name} is not halted"),
            },
        );
    };
    let detail = format!("resumed ({reason}); it was halted: {}", was.reason);
    state.audit.append(ctx.index, now, &request.actor, "promotion.resumed", &subject, &detail);
    Outcome::PromotionUpdated { line: subject }
}

/// A time (ms since the epoch) as people read it: `2026-12-06 08:58:02 UTC`.
pub fn utc_text(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| format!("{ms} ms"), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}
