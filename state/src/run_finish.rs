//! Bookkeeping when a run ends: its secret's record, the loads it held, the audit event, the
//! promotion wave it belongs to, and the run counters `/metrics` reports.

use std::collections::BTreeMap;

use dsops_proto::domain::StepResult;
use serde::{Deserialize, Serialize};

use super::runs::{Run, RunPhase, SecretRecord, StepKind};
use super::{ApplyContext, State};

/// Upper bounds of the time-to-rotate histogram, seconds (then +Inf).
pub const DURATION_BUCKETS_S: [u64; 10] = [1, 5, 15, 60, 300, 900, 3600, 21_600, 86_400, 604_800];

/// Counters of ended runs, kept in the state so every node reports the same totals and they
/// survive restarts and leader changes (Prometheus counters never go down).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounters {
    /// Whether counting started ([`crate::Command::StartRunCounters`]); runs that ended before
    /// are not counted.
    #[serde(default)]
    pub counting: bool,
    /// Runs ended, by `strategy` then final phase (`Completed`, `RolledBack`, ...). Both come
    /// from fixed sets, so the series stay few.
    #[serde(default)]
    pub ended: BTreeMap<String, BTreeMap<String, u64>>,
    /// Completed runs by time to rotate (requested to completed), per bucket of
    /// [`DURATION_BUCKETS_S`] (not cumulative), the last for longer ones.
    #[serde(default)]
    pub duration_buckets: Vec<u64>,
    /// The sum of those times, ms.
    #[serde(default)]
    pub duration_sum_ms: u64,
}

impl RunCounters {
    /// Whether nothing was counted yet.
    pub fn is_empty(&self) -> bool {
        !self.counting && self.ended.is_empty()
    }

    fn count(&mut self, strategy: &str, phase: RunPhase, requested_at_ms: u64, now: u64) {
        if !self.counting {
            return;
        }
        let strategy = strategy.chars().take(32).collect::<String>();
        *self.ended.entry(strategy).or_default().entry(phase.name().to_owned()).or_default() += 1;
        if phase == RunPhase::Completed {
            let took_ms = now.saturating_sub(requested_at_ms);
            if self.duration_buckets.len() != DURATION_BUCKETS_S.len() + 1 {
                self.duration_buckets.resize(DURATION_BUCKETS_S.len() + 1, 0);
            }
            let at = DURATION_BUCKETS_S
                .iter()
                .position(|bound| took_ms <= bound * 1000)
                .unwrap_or(DURATION_BUCKETS_S.len());
            self.duration_buckets[at] += 1;
            self.duration_sum_ms = self.duration_sum_ms.saturating_add(took_ms);
        }
    }
}

/// Whether a run counted towards its target's and segment's load (it was dispatched once).
pub(super) fn phase_started(run: &Run) -> bool {
    run.transitions.iter().any(|t| t.phase == RunPhase::Dispatched)
}

/// One run less in `loads[key]`.
fn release(loads: &mut std::collections::BTreeMap<String, u32>, key: &str) {
    if let Some(load) = loads.get_mut(key) {
        *load = load.saturating_sub(1);
        if *load == 0 {
            loads.remove(key);
        }
    }
}

/// Bookkeeping when a run ends.
pub(crate) fn finish(state: &mut State, run_id: &str, now: u64, ctx: ApplyContext, actor: &str) {
    let Some(run) = state.runs.get_mut(run_id) else { return };
    run.finished_at_ms = Some(now);
    run.step = None;
    let phase = run.phase;
    let fingerprint = run.new_fingerprint.clone();
    let secret = run.secret();
    let error = run.last_error.clone();
    let key = run.spec.target_key();
    let segment = run.spec.segment.clone();
    let started = phase_started(run);
    let (strategy, requested_at_ms) = (run.spec.strategy.clone(), run.requested_at_ms);
    let renew_at_ms = run.renew_at_ms;
    // A first rotation has nothing to roll back to: its rollback keeps the run's value (see the
    // agent's executor) and says so with the value's fingerprint.
    let kept = (phase == RunPhase::RolledBack)
        .then(|| run.receipts.last())
        .flatten()
        .filter(|r| {
            r.outcome == StepResult::Succeeded
                && (r.step == StepKind::Rollback || r.checked_step == Some(StepKind::Rollback))
        })
        .and_then(|r| r.fingerprint.clone())
        .filter(|kept| fingerprint.as_ref() == Some(kept));
    if state.active_runs.remove(run_id) && started {
        release(&mut state.target_load, &key);
        release(&mut state.segment_load, &segment);
    }
    let record: &mut SecretRecord = state.secrets.entry(secret.clone()).or_default();
    if record.active_run.as_deref() == Some(run_id) {
        record.active_run = None;
    }
    record.last_run = Some(run_id.to_owned());
    record.last_phase = Some(phase);
    if phase == RunPhase::Completed {
        record.last_rotated_at_ms = Some(now);
        record.current_fingerprint = fingerprint;
        record.renew_at_ms = renew_at_ms;
    }
    if let Some(kept) = &kept {
        record.last_rotated_at_ms = Some(now);
        record.current_fingerprint = Some(kept.clone());
        record.renew_at_ms = renew_at_ms;
    }
    let detail = match phase {
        RunPhase::Completed => format!("run {run_id} completed"),
        RunPhase::RolledBack if kept.is_some() => format!(
            "run {run_id} ended RolledBack with nothing earlier to restore: its value, which works, was kept as current ({error})"
        ),
        _ => format!("run {run_id} ended {}: {error}", phase.name()),
    };
    state.audit.append(
        ctx.index,
        now,
        actor,
        &format!("run.{}", phase.name().to_lowercase()),
        &secret,
        &detail,
    );
    state.run_counters.count(&strategy, phase, requested_at_ms, now);
    super::promotion_apply::run_ended(state, run_id, now, ctx, actor);
}
