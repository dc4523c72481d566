//! Promotion gates as the state machine keeps them: each health check's latest verdict, from
//! probes an agent of the check's segment ran and signed. A check fails after `failures`
//! failing probes in a row; its configured action then halts the lines that watch it, makes them
//! wait, or lets them go on. A stage starts only when every gate of the stage before it (watched
//! through that stage's soak) and every gate of its own passes with a verdict from after the
//! stage before it completed.

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use super::promotion_apply::{Halt, HaltKind, PromotionLine};
use super::{ApplyContext, Outcome, Request, State};

/// How many checks the state keeps (one per `health` entry of the configuration).
pub const MAX_GATES: usize = 1_000;
/// Verdicts kept per check.
pub const GATE_HISTORY: usize = 16;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    /// Healthy.
    Pass,
    /// Unhealthy (`failures` probes in a row).
    Fail,
    /// Could not tell, or failing fewer times than `failures` so far.
    Inconclusive,
}

impl GateVerdict {
    fn parse(text: &str) -> Option<GateVerdict> {
        match text {
            "pass" => Some(GateVerdict::Pass),
            "fail" => Some(GateVerdict::Fail),
            "inconclusive" => Some(GateVerdict::Inconclusive),
            _ => None,
        }
    }

    /// As printed.
    pub fn name(self) -> &'static str {
        match self {
            GateVerdict::Pass => "pass",
            GateVerdict::Fail => "fail",
            GateVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// What a verdict does to the lines that watch the check (`health.<name>.on_fail`,
/// `on_inconclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAction {
    /// Halt the line.
    Halt,
    /// Start nothing until the check passes.
    Wait,
    /// Go on as if it passed.
    Continue,
}

/// One probe's result, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateProbe {
    /// When recorded (log time).
    pub at_ms: u64,
    /// What the probe found.
    pub probe: GateVerdict,
    /// The agent's words (statuses and errors, never data).
    pub detail: String,
    /// Who ran it.
    pub agent_id: String,
}

/// A check's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRecord {
    /// The verdict after the latest probe.
    pub verdict: GateVerdict,
    /// Failing probes in a row.
    pub failures_in_row: u32,
    /// The latest probe's id (a probe counts once).
    pub probe_id: String,
    /// The latest probe's time on the agent's clock.
    pub agent_at_ms: u64,
    /// What a failure does.
    pub on_fail: GateAction,
    /// What an inconclusive verdict does.
    pub on_inconclusive: GateAction,
    /// The latest probes, oldest first (at most [`GATE_HISTORY`]).
    pub history: std::collections::VecDeque<GateProbe>,
}

impl GateRecord {
    /// When the latest verdict was recorded.
    pub fn at_ms(&self) -> u64 {
        self.history.back().map_or(0, |p| p.at_ms)
    }

    /// What the verdict does.
    pub fn action(&self) -> GateAction {
        match self.verdict {
            GateVerdict::Pass => GateAction::Continue,
            GateVerdict::Fail => self.on_fail,
            GateVerdict::Inconclusive => self.on_inconclusive,
        }
    }
}

/// A probe's result as the agent signed it.
#[derive(Debug, Deserialize)]
struct ProbeBody {
    id: String,
    check: String,
    outcome: String,
    #[serde(default)]
    detail: String,
    at_ms: u64,
}

/// What the leader knows of the check from the configuration.
pub(super) struct CheckRules<'a> {
    pub segment: &'a str,
    pub failures: u32,
    pub on_fail: GateAction,
    pub on_inconclusive: GateAction,
}

/// The gates stage `stage` of `line`'s wave waits on (the stage before it, watched through its
/// soak, and its own), and why it cannot start yet, if it cannot.
pub fn gates_block(state: &State, line: &PromotionLine, stage: usize) -> Option<String> {
    let previous = stage.checked_sub(1).and_then(|i| line.stages.get(i))?;
    let since = previous.ended.map_or(u64::MAX, |(at, _)| at);
    let own = line.stages.get(stage).map(|s| s.gates.as_slice()).unwrap_or_default();
    for gate in previous.gates.iter().chain(own) {
        let Some(record) = state.gates.get(gate).filter(|r| r.at_ms() >= since) else {
            return Some(format!("waiting for gate {gate} (no verdict yet)"));
        };
        match record.action() {
            GateAction::Continue => {}
            GateAction::Wait | GateAction::Halt => {
                let detail = record.history.back().map(|p| p.detail.as_str()).unwrap_or_default();
                return Some(format!(
                    "waiting for gate {gate} ({}: {detail})",
                    record.verdict.name()
                ));
            }
        }
    }
    None
}

/// Records a probe an agent ran and signed; a verdict whose action is `halt` halts every line
/// under way that watches the check.
pub(super) fn record(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    agent_id: &str,
    body_hex: &str,
    signature_hex: &str,
    rules: CheckRules<'_>,
) -> Outcome {
    let now = request.proposed_at_ms;
    let (body, segment) = match super::agent_apply::agent_signed(
        state,
        agent_id,
        body_hex,
        signature_hex,
        "health-check result",
    ) {
        Ok(verified) => verified,
        Err(refusal) => return refusal,
    };
    let Ok(probe) = serde_json::from_slice::<ProbeBody>(&body) else {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "health-check result: malformed body",
        );
    };
    let Some(verdict) = GateVerdict::parse(&probe.outcome) else {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("health-check result: unknown outcome {:?}", probe.outcome),
        );
    };
    if segment != rules.segment {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!(
                "agent {agent_id} of segment {segment} cannot answer check {} (segment {})",
                probe.check, rules.segment
            ),
        );
    }
    if !state.gates.contains_key(&probe.check) && state.gates.len() >= MAX_GATES {
        return Outcome::rejected(
            ErrorCode::ResourceExhausted,
            format!("{MAX_GATES} health checks are kept"),
        );
    }
    let record = state.gates.entry(probe.check.clone()).or_insert_with(|| GateRecord {
        verdict: GateVerdict::Inconclusive,
        failures_in_row: 0,
        probe_id: String::new(),
        agent_at_ms: 0,
        on_fail: rules.on_fail,
        on_inconclusive: rules.on_inconclusive,
        history: Default::default(),
    });
    if record.probe_id == probe.id || probe.at_ms <= record.agent_at_ms {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!(
                "probe {} of check {} is not newer than the one recorded",
                probe.id, probe.check
            ),
        );
    }
    let before = record.verdict;
    record.failures_in_row = match verdict {
        GateVerdict::Pass => 0,
        GateVerdict::Fail => record.failures_in_row.saturating_add(1),
        GateVerdict::Inconclusive => record.failures_in_row,
    };
    record.verdict = match verdict {
        GateVerdict::Fail if record.failures_in_row < rules.failures.max(1) => {
            GateVerdict::Inconclusive
        }
        other => other,
    };
    record.probe_id = probe.id.clone();
    record.agent_at_ms = probe.at_ms;
    record.on_fail = rules.on_fail;
    record.on_inconclusive = rules.on_inconclusive;
    let detail: String = probe.detail.chars().take(300).collect();
    record.history.push_back(GateProbe {
        at_ms: now,
        probe: verdict,
        detail: detail.clone(),
        agent_id: agent_id.to_owned(),
    });
    while record.history.len() > GATE_HISTORY {
        record.history.pop_front();
    }
    let (after, action, in_row) = (record.verdict, record.action(), record.failures_in_row);
    let check = probe.check;
    if after != before {
        let text = format!("{} ({in_row} failing probe(s) in a row): {detail}", after.name());
        let event = format!("gate.{}", after.name());
        state.audit.append(ctx.index, now, agent_id, &event, &check, &text);
    }
    if action == GateAction::Halt {
        halt_watchers(
            state,
            request,
            ctx,
            &check,
            &format!("gate {check} {}: {detail}", after.name()),
        );
    }
    Outcome::GateRecorded { check, verdict: after }
}

/// Halts every line under way whose soaking stage, or whose next stage, has `check` as a gate.
fn halt_watchers(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    check: &str,
    reason: &str,
) {
    let now = request.proposed_at_ms;
    let mut halted = Vec::new();
    for (name, line) in state.promotions.iter_mut() {
        if line.watched_gates().any(|g| g == check) {
            let Some(next) = line.stages.iter().position(|s| s.run_id.is_none()) else {
                continue;
            };
            line.halted = Some(Halt {
                kind: HaltKind::Gate,
                reason: reason.to_owned(),
                by: request.actor.clone(),
                at_ms: now,
            });
            halted.push((name.clone(), line.wave, line.stages[next].secret.clone()));
        }
    }
    for (name, wave, secret) in halted {
        let detail = format!("wave {wave} of line {name} stopped before {secret}: {reason}");
        state.audit.append(ctx.index, now, &request.actor, "promotion.halted", &secret, &detail);
    }
}
