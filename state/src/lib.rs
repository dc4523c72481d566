//! The replicated state machine, pure and deterministic.
//!
//! ```text
//!   Request { request_id, actor, proposed_at_ms, command }
//!        │  (committed in the raft log at `index`)
//!        ▼
//!   apply(&mut State, &Request, ApplyContext { index }) ──▶ Response
//! ```
//!
//! `apply` reads no clock, draws no random number and does no I/O: time comes from the request
//! (stamped by the proposing node and fixed in the log), ids from the log index. Every node that
//! applies the same log reaches the same state. A refused command is a committed *outcome*
//! ([`Outcome::Rejected`]), not a raft failure. A retried request (same request id) is applied
//! once: the second time the first response is returned ([`Dedup`]).

mod agent_apply;
mod apply;
mod approval_apply;
mod audit;
mod cluster_apply;
mod command;
mod config_apply;
pub mod config_staging;
mod dedup;
pub mod evidence_apply;
#[cfg(test)]
mod evidence_tests;
mod gate_apply;
pub mod log_format;
mod model;
mod operator_apply;
pub mod outbox;
mod outcome;
mod promotion_apply;
#[cfg(test)]
mod promotion_tests;
mod receipt_judge;
mod reminder_apply;
pub mod report_token_apply;
mod run_apply;
mod run_finish;
mod run_steps;
mod runs;
mod snapshot;
#[cfg(test)]
mod test_world;

pub use apply::{ApplyContext, apply};
pub use approval_apply::eligible;
pub use audit::{AuditEvent, AuditLog, Checkpoint, GENESIS_HASH, RECENT};
pub use command::{Command, ConfigChange, NodeRole, Request};
pub use config_staging::{
    CONFIG_PART_BYTES, ConfigPayload, MAX_STAGED_CONFIG_BYTES, StagedConfig, split_payload,
};
pub use dedup::{DEDUP_CAPACITY, DEDUP_WINDOW_MS, Dedup};
pub use evidence_apply::{CHECKPOINT_ACTION, EvidenceKey, SignedCheckpoint};
pub use gate_apply::{
    GATE_HISTORY, GateAction, GateProbe, GateRecord, GateVerdict, MAX_GATES, gates_block,
};
pub use model::{
    CLOSED_REVIEWS_KEPT, CONFIG_HISTORY, CONFIG_HISTORY_BYTES, MAX_OPERATOR_INVITES, NodeRecord,
    OperatorInvite, OperatorRecord, REVIEW_DEADLINE_MS, Review, RevokedIdentity, State,
    StoredConfig, StoredToken,
};
pub use outbox::{DeliveryStatus, MAX_DELIVERY_ATTEMPTS, MAX_OUTBOX, OutboxEntry};
pub use outcome::{Outcome, Response};
pub use promotion_apply::{
    Halt, HaltKind, MAX_PROMOTION_LINES, MAX_REASON as MAX_HALT_REASON, PromotionLine, WaveStage,
    utc_text,
};
pub use receipt_judge::{ReceiptRefusal, judge_receipt};
pub use report_token_apply::{MAX_REPORT_TOKENS, ReportToken};
pub use run_finish::{DURATION_BUCKETS_S, RunCounters};
pub use runs::{
    AgentRecord, AgentToken, ApprovalDecision, ApprovalRule, Dispatch, MAX_PAST_DECISIONS,
    OVERDUE_REPEAT_MS, PromotionRef, RUN_HISTORY, ReceiptRecord, Reminder, ReminderMark, Run,
    RunApproval, RunPhase, RunRate, RunSpec, SecretRecord, StepKind, Transition, backoff_ms,
    secret_id,
};
pub use snapshot::{SNAPSHOT_MAGIC, SnapshotError, decode_snapshot, encode_snapshot};
