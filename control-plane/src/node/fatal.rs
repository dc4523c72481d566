//! A node whose raft core stopped on a fatal error (its log or state storage failed, or the core
//! panicked) cannot serve again without a restart: it stops serving and says why, instead of
//! answering "unavailable" for ever. `dsops-server run` exits non-zero with the reason, so the
//! service manager restarts it (and the operator sees the storage error).

use openraft::error::Fatal;
use openraft::{BasicNode, RaftMetrics};
use tokio::sync::watch;

use crate::raft::NodeId;

/// Waits until raft stops on a fatal error and returns why; `None` when raft was stopped on
/// purpose (shutdown) or its metrics ended.
pub async fn fatal_error(
    mut metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
) -> Option<String> {
    loop {
        match &metrics.borrow_and_update().running_state {
            Ok(()) => {}
            Err(Fatal::Stopped) => return None,
            Err(Fatal::StorageError(error)) => {
                return Some(format!("raft storage failed: {error}"));
            }
            Err(Fatal::Panicked) => return Some("raft's core panicked".to_owned()),
        }
        metrics.changed().await.ok()?;
    }
}

#[cfg(test)]
mod tests {
    use openraft::{ErrorSubject, ErrorVerb, StorageError};

    use super::*;

    #[tokio::test]
    async fn a_storage_failure_is_reported_and_a_deliberate_stop_is_not() {
        let (send, receive) = watch::channel(RaftMetrics::new_initial(1));
        let waiter = tokio::spawn(fatal_error(receive));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a healthy node has nothing to report");
        let io = std::io::Error::other("No space left on device");
        let failure = StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Write, io);
        send.send_modify(|m| m.running_state = Err(Fatal::StorageError(failure)));
        let why = waiter.await.unwrap().expect("a fatal error");
        assert!(why.contains("raft storage failed") && why.contains("No space left"), "{why}");

        let (send, receive) = watch::channel(RaftMetrics::new_initial(1));
        send.send_modify(|m| m.running_state = Err(Fatal::Stopped));
        assert_eq!(fatal_error(receive).await, None);
    }
}
