//! Rotation on the control plane: what a run does ([`spec`]), selecting and starting runs
//! ([`start`], for the admin API and the scheduler) and reporting them ([`report`]), the
//! leader's [`scheduler`] that starts runs when schedules fire, and its [`dispatcher`] that drives runs through the
//! protocol to the agents connected here ([`crate::control::AgentRegistry`]); the leader's
//! [`approvals`] upkeep ends expired approval requests and resolves again the plans a
//! configuration change reset; its [`promotion`] loop that starts each stage of a wave after
//! the previous one soaked; its [`reminders`] of secrets past or near their due time; and
//! its [`notifier`], which queues notification deliveries from the audit log.
//!
//! ```text
//!  dsops rotate ─▶ admin API ─┐
//!  scheduler (cron firing) ───┴▶ RequestRun (raft) ─▶ dispatcher ─▶ DispatchStep (raft) ─▶ agent
//!                                                        ▲                                   │
//!                                                        └──── RecordReceipt (raft) ◀─ signed receipt
//! ```

pub mod approvals;
pub mod compliance;
pub mod dispatcher;
pub mod notifier;
pub mod preflight;
pub mod promotion;
pub mod receipts;
pub mod reminders;
pub mod report;
pub mod scheduler;
pub mod spec;
pub mod start;

pub use receipts::{ReceiptError, submit_receipt};

use std::time::Duration;

use tokio::sync::watch;

use crate::control::ControlPlane;

/// Calls `tick` every `every` while this node leads, until `shutdown`; a failed tick is logged
/// (naming `what`) and the next one tries again. For the leader's stateless loops.
pub(crate) async fn while_leading<F, Fut>(
    control: ControlPlane,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
    what: &'static str,
    mut tick: F,
) where
    F: FnMut(ControlPlane) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if !control.is_leader() {
            continue;
        }
        if let Err(error) = tick(control.clone()).await {
            tracing::warn!(%error, "{what}: tick failed; trying again");
        }
    }
}
