//! Rotation on the control plane: what a run does ([`spec`]), which agents are connected here
//! ([`registry`]), and the leader's [`dispatcher`] that drives runs through the protocol.
//!
//! ```text
//!  dsops rotate ─▶ admin API ─▶ RequestRun (raft) ─▶ dispatcher ─▶ DispatchStep (raft) ─▶ agent
//!                                                       ▲                                   │
//!                                                       └──── RecordReceipt (raft) ◀─ signed receipt
//! ```

pub mod dispatcher;
pub mod registry;
pub mod spec;

pub use dispatcher::{ReceiptError, submit_receipt};
pub use registry::{AgentRegistry, ConnectedAgent};
