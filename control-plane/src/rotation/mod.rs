//! Rotation on the control plane: what a run does ([`spec`]), selecting and starting runs and
//! reporting them ([`start`], for the admin API and the scheduler), the leader's [`scheduler`]
//! that starts runs when schedules fire, and its [`dispatcher`] that drives runs through the
//! protocol to the agents connected here ([`crate::control::AgentRegistry`]); the leader's
//! [`approvals`] upkeep ends expired approval requests and resolves again the plans a
//! configuration change reset; and its [`notifier`], which queues notification deliveries
//! from the audit log.
//!
//! ```text
//!  dsops rotate ─▶ admin API ─┐
//!  scheduler (cron firing) ───┴▶ RequestRun (raft) ─▶ dispatcher ─▶ DispatchStep (raft) ─▶ agent
//!                                                        ▲                                   │
//!                                                        └──── RecordReceipt (raft) ◀─ signed receipt
//! ```

pub mod approvals;
pub mod dispatcher;
pub mod notifier;
pub mod scheduler;
pub mod spec;
pub mod start;

pub use dispatcher::{ReceiptError, submit_receipt};
