//! Rotation on the control plane: what a run does ([`spec`]), which agents are connected here
//! ([`registry`]), the leader's [`scheduler`] that starts runs when schedules fire, and its
//! [`dispatcher`] that drives runs through the protocol.
//!
//! ```text
//!  dsops rotate ─▶ admin API ─┐
//!  scheduler (cron firing) ───┴▶ RequestRun (raft) ─▶ dispatcher ─▶ DispatchStep (raft) ─▶ agent
//!                                                        ▲                                   │
//!                                                        └──── RecordReceipt (raft) ◀─ signed receipt
//! ```

pub mod dispatcher;
pub mod registry;
pub mod scheduler;
pub mod spec;

pub use dispatcher::{ReceiptError, submit_receipt};
pub use registry::{AgentRegistry, ConnectedAgent};
