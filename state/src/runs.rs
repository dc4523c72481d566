//! Rotation runs in the replicated state: the run state machine of the rotation protocol (`docs/rotation.md`).
//!
//! ```text
//! Requested → Dispatched → Staged → Applied → Verified → Promoted → Retired → Completed
//!                              ╲        ╲          ╲
//!                               └────────┴──────────┴──→ RollingBack → RolledBack
//!                     any step, attempts exhausted ──→ Quarantined (a human decides)
//! ```
//!
//! A run belongs to one secret (`env/KEY`) and carries the secret's next *generation*; a
//! receipt of another generation is refused (fencing). Exactly one run is in flight per secret.
//! Every step is dispatched to one agent with an attempt number; a failure is retried with
//! exponential backoff whose jitter comes from the log entry, an indeterminate outcome is
//! resolved by a read-only `check` step, and after `max_attempts` the run rolls back (before
//! promotion) or is quarantined (after).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// A step, as the state records it: the protocol's own [`dsops_proto::domain::Step`].
pub use dsops_proto::domain::Step as StepKind;
use dsops_proto::domain::StepResult;

/// Where a run is: the admin API's own [`dsops_proto::domain::RunPhase`].
pub use dsops_proto::domain::RunPhase;

/// What a run does, resolved from the configuration when it is requested. References only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// `immediate`, `two-key`, `random`, `script` or `webhook`.
    pub strategy: String,
    /// `store://<store>/<path>#<field>`.
    pub store_ref: String,
    /// `svc://<service>?kind=<kind>`; `None` for `random`.
    pub service_ref: Option<String>,
    /// `rotation.config` as JSON (names, lengths, commands; never values).
    pub config_json: String,
    /// The segment whose agents run it.
    pub segment: String,
    /// How long the old credential stays valid after promotion.
    pub grace_ms: u64,
    /// Attempts per step before giving up.
    pub max_attempts: u32,
    /// How long an agent has for one step before it is resolved by a check.
    pub step_timeout_ms: u64,
    /// The configuration version it was resolved from.
    pub config_version: u64,
    /// The catalog's format constraint for new values (charset name or pattern).
    #[serde(default)]
    pub value_format: Option<String>,
    /// Who must approve the run before it starts; `None` when nobody must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
    /// The promotion line the secret rotates in, and its stage there; `None` outside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionRef>,
    /// How many runs of its target may start in a window (the service's `rateLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RunRate>,
}

/// At most `runs` runs of one target start in any `per_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRate {
    /// Starts allowed in a window.
    pub runs: u32,
    /// The window, ms.
    pub per_ms: u64,
}

/// A run's place in a promotion line (`rotation.promotion`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionRef {
    /// The line (a key, or a `promotion.group`).
    pub line: String,
    /// This run's stage, an index into `stages`.
    pub stage: u32,
    /// The line's secrets (`env/KEY`), in stage order.
    pub stages: Vec<String>,
    /// How long this stage soaks once its run completed, ms.
    pub soak_ms: u64,
    /// Each stage's gates (`health` checks), in stage order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_gates: Vec<Vec<String>>,
}

/// Who must approve a run (`rotation.approvals.<env>`, or the catalog's `requireApproval`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// How many distinct approvers (the requester never counts).
    pub required: u32,
    /// Operator names and `role:<role>` entries.
    pub approvers: Vec<String>,
    /// How long the request waits before it expires, ms.
    pub expires_ms: u64,
}

/// A run's approval: the plan it is bound to and the decisions of the current round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunApproval {
    /// When the request expires unless approved (log time), ms since the epoch.
    pub expires_at_ms: u64,
    /// Which round: each configuration change while the run waits starts a new one.
    pub round: u32,
    /// [`RunSpec::plan_digest`] of the plan the decisions are about.
    pub plan_digest: String,
    /// This round's decisions, in order (one per operator).
    pub decisions: Vec<ApprovalDecision>,
    /// Decisions of earlier rounds, kept as evidence (at most [`MAX_PAST_DECISIONS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past: Vec<ApprovalDecision>,
    /// When the last approval needed came in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at_ms: Option<u64>,
}

/// How many decisions of earlier rounds a run keeps.
pub const MAX_PAST_DECISIONS: usize = 32;

/// One operator's signed decision, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// The operator.
    pub operator: String,
    /// Approve (true) or deny.
    pub approve: bool,
    /// Why.
    pub reason: String,
    /// The round it belongs to.
    pub round: u32,
    /// The plan digest it signed.
    pub plan_digest: String,
    /// When the operator signed it (its clock), ms since the epoch.
    pub signed_at_ms: u64,
    /// When the cluster recorded it (log time).
    pub recorded_at_ms: u64,
    /// The signature over [`dsops_proto::domain::decision_bytes`] (DER, hex).
    pub signature_hex: String,
    /// The certificate whose key signed, PEM.
    pub certificate_pem: String,
}

impl RunSpec {
    /// SHA-256 (hex) of what the run will do: strategy, target, store, segment, settings and the
    /// configuration version it was resolved from. An approval is bound to it.
    pub fn plan_digest(&self, env: &str, key: &str, restore_previous: bool) -> String {
        use sha2::{Digest, Sha256};
        let text = format!(
            "dsops-plan-v1\nsecret={env}/{key}\nrollback={restore_previous}\nstrategy={}\nstore={}\nservice={}\nsegment={}\nconfig_version={}\nsettings={}",
            self.strategy,
            self.store_ref,
            self.service_ref.as_deref().unwrap_or("-"),
            self.segment,
            self.config_version,
            self.config_json,
        );
        dsops_proto::hex(&Sha256::digest(text.as_bytes()))
    }

    /// What the run loads: its service (`svc:<name>`), or its store for `random`
    /// (`store:<name>`). Per-target concurrency limits count runs by this key.
    pub fn target_key(&self) -> String {
        let service = self.service_ref.as_deref().and_then(|s| s.strip_prefix("svc://"));
        match service {
            Some(rest) => format!("svc:{}", rest.split('?').next().unwrap_or(rest)),
            None => {
                let store = self.store_ref.strip_prefix("store://").unwrap_or(&self.store_ref);
                format!("store:{}", store.split('/').next().unwrap_or(store))
            }
        }
    }

    /// Whether an old credential is left to revoke after promotion: `two-key` and `overlap`
    /// leave one working, and a `script`'s program or a `webhook` may (`immediate` replaced it in
    /// place at apply; `random` has no target).
    pub fn has_retire(&self) -> bool {
        matches!(self.strategy.as_str(), "two-key" | "overlap" | "script" | "webhook")
    }

    /// Whether the strategy changes a target (everything but `random`).
    pub fn has_target(&self) -> bool {
        self.strategy != "random"
    }
}

/// A step sent to an agent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatch {
    /// The step.
    pub step: StepKind,
    /// For a check: the step checked.
    pub checked_step: Option<StepKind>,
    /// The attempt.
    pub attempt: u32,
    /// The agent it went to.
    pub agent_id: String,
    /// When the control plane stops waiting, ms since the epoch.
    pub deadline_ms: u64,
}

/// A verified receipt, kept as evidence: the exact signed bytes and signature (hex), and the
/// facts the state used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecord {
    /// The step.
    pub step: StepKind,
    /// For a check: the step checked.
    pub checked_step: Option<StepKind>,
    /// The attempt.
    pub attempt: u32,
    /// What the step came to (`timed_out`: no receipt before the deadline). Stored by name.
    pub outcome: StepResult,
    /// The agent.
    pub agent_id: String,
    /// Fingerprint of the new value, hex, if the step reported one.
    pub fingerprint: Option<String>,
    /// The agent's explanation (never a value).
    pub detail: String,
    /// When it was committed, ms since the epoch.
    pub at_ms: u64,
    /// The signed body, hex (empty for `timed_out`).
    pub body_hex: String,
    /// The Ed25519 signature, hex (empty for `timed_out`).
    pub signature_hex: String,
}

/// A phase change, for history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The phase entered.
    pub phase: RunPhase,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// One rotation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The environment.
    pub env: String,
    /// The variable.
    pub key: String,
    /// The secret's generation this run holds.
    pub generation: u64,
    /// What it does.
    pub spec: RunSpec,
    /// A rollback run: stage the store's previous version instead of a new value.
    pub restore_previous: bool,
    /// Where it is.
    pub phase: RunPhase,
    /// The step to perform next (`None` when terminal).
    pub step: Option<StepKind>,
    /// For a check: the step being checked.
    pub checked_step: Option<StepKind>,
    /// Attempt of the current step, from 1.
    pub attempt: u32,
    /// Not before this time (backoff, grace period), ms since the epoch.
    pub not_before_ms: u64,
    /// The step in flight, if any.
    pub dispatched: Option<Dispatch>,
    /// Fingerprint of the staged value, hex.
    pub new_fingerprint: Option<String>,
    /// Verified receipts, in order.
    pub receipts: Vec<ReceiptRecord>,
    /// Phase changes, in order.
    pub transitions: Vec<Transition>,
    /// Who asked.
    pub requested_by: String,
    /// Why (operator's reason, `schedule`, `rollback of run-…`).
    pub reason: String,
    /// The last failure, for status and history.
    pub last_error: String,
    /// When it was requested.
    pub requested_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Its approval, when one is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<RunApproval>,
    /// The W3C trace context of the request that started it; each dispatch is a span under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_parent: Option<String>,
    /// A certificate: when its issuer suggests renewing what this run issued (from the stage's
    /// receipt), ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at_ms: Option<u64>,
}

impl Run {
    /// `env/KEY`.
    pub fn secret(&self) -> String {
        secret_id(&self.env, &self.key)
    }
}

/// The key of a secret in [`crate::State::secrets`].
pub fn secret_id(env: &str, key: &str) -> String {
    format!("{env}/{key}")
}

/// Runs kept per secret (older ones are dropped from the state).
pub const RUN_HISTORY: usize = 20;

/// What the state knows about one secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// The last generation issued.
    pub generation: u64,
    /// The run in flight.
    pub active_run: Option<String>,
    /// The last run that ended, and how.
    pub last_run: Option<String>,
    /// Its final phase.
    pub last_phase: Option<RunPhase>,
    /// When a run last completed, ms since the epoch.
    pub last_rotated_at_ms: Option<u64>,
    /// Fingerprint of the current value after the last completed run, hex.
    pub current_fingerprint: Option<String>,
    /// Recent run ids, oldest first (at most [`RUN_HISTORY`]).
    pub history: VecDeque<String>,
    /// The last reminder that it is past due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_reminded: Option<ReminderMark>,
    /// The last reminder ahead of its due time (`beforeExpiry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_reminded: Option<ReminderMark>,
    /// A certificate: when its issuer suggests renewing the current one (ACME renewal
    /// information), ms since the epoch; the scheduler renews then instead of by `renew_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at_ms: Option<u64>,
}

/// A reminder sent about a secret: for which due time, and when (log time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderMark {
    /// The due time it was about, ms since the epoch.
    pub due_ms: u64,
    /// When it was sent, ms since the epoch.
    pub at_ms: u64,
}

/// What a reminder says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reminder {
    /// The secret is past its due time and has not rotated (`secret.overdue`, repeated daily).
    Overdue,
    /// Its due time is near (`secret.expiring`, once per due time).
    Expiring,
}

/// How often an overdue reminder repeats while the secret stays overdue (24 h).
pub const OVERDUE_REPEAT_MS: u64 = 86_400_000;

/// An agent allowed to send receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its id.
    pub agent_id: String,
    /// Its segment.
    pub segment: String,
    /// Its Ed25519 public key, hex.
    pub public_key: String,
    /// When registered, ms since the epoch.
    pub registered_at_ms: u64,
    /// Set when revoked.
    pub revoked_at_ms: Option<u64>,
    /// The host it enrolled from (remote agents).
    #[serde(default)]
    pub hostname: String,
    /// The version it enrolled with.
    #[serde(default)]
    pub version: String,
    /// When its newest certificate expires, ms since the epoch (remote agents).
    #[serde(default)]
    pub cert_not_after_ms: Option<u64>,
}

/// A one-time agent enrolment token, stored by the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentToken {
    /// The segment the enrolled agent belongs to.
    pub segment: String,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: u64,
    /// The agent that used it.
    pub used_by: Option<String>,
}

/// Backoff before attempt `attempt` (2, 3, ...): 1 s doubling to at most 60 s, scaled by a jitter
/// factor in [0.5, 1.0] taken from `jitter_permille` (0..=1000, drawn by the proposer and fixed in
/// the log, so every node computes the same time).
pub fn backoff_ms(attempt: u32, jitter_permille: u16) -> u64 {
    let exponent = attempt.saturating_sub(2).min(6);
    let base = (1_000u64 << exponent).min(60_000);
    let jitter = u64::from(jitter_permille.min(1000));
    base * (1000 + jitter) / 2000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        assert_eq!(backoff_ms(2, 1000), 1_000);
        assert_eq!(backoff_ms(3, 1000), 2_000);
        assert_eq!(backoff_ms(2, 0), 500);
        assert_eq!(backoff_ms(50, 1000), 60_000);
        assert!(backoff_ms(4, 500) < backoff_ms(4, 1000));
    }
}
