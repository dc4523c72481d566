//! The raft layer: openraft's type configuration, durable storage (the log in segment files,
//! snapshots in redb), and (in `network`/`service`) the gRPC transport between peers.
//!
//! ```text
//!  Raft<TypeConfig> ──append/vote/truncate/purge──▶ LogStore        (raft-log/*.wal)
//!        │          ──apply/snapshot──────────────▶ StateMachineStore (state in memory,
//!        │                                            snapshots in state.redb)
//!        └── RaftNetworkFactory ──tonic + mTLS──▶ peers' RaftPeer service
//! ```
//!
//! The state machine is held in memory and made durable by the log plus snapshots: on restart
//! the last snapshot is loaded and openraft re-applies the committed entries after it (the
//! committed index is saved with the log).

mod audit_store;
mod convert;
mod log_cache;
mod log_import;
mod log_store;
mod network;
mod segments;
mod service;
mod sm_store;
mod types;

pub use audit_store::{AuditHistory, AuditRetention};
pub use log_store::{EntryError, LogStore, decode_entry, encode_entry};
pub use network::{LinkAction, LinkFilter, Network, OpenLinks};
pub use service::RaftPeerService;
pub use sm_store::StateMachineStore;
pub use types::{Applied, NodeId, Proposal, TypeConfig};

/// Opens (or creates) a redb database. A database this process still holds (a node that is
/// shutting down while it restarts) is waited for, up to ten seconds.
pub(crate) fn open_database(path: &std::path::Path) -> Result<redb::Database, redb::DatabaseError> {
    let started = std::time::Instant::now();
    loop {
        match redb::Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if started.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Wraps any error as an openraft storage I/O error.
pub(crate) fn storage_error<E>(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<NodeId>,
    error: E,
) -> openraft::StorageError<NodeId>
where
    E: std::error::Error + 'static,
{
    openraft::StorageError::IO { source: make(openraft::AnyError::new(&error)) }
}

#[cfg(test)]
mod suite {
    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};

    use super::{LogStore, NodeId, StateMachineStore, TypeConfig};

    /// Builds a fresh pair of stores in a temporary directory, kept alive by the returned guard.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().expect("temporary directory");
            let log = LogStore::open(&dir.path().join("raft-log"), None).expect("open log");
            let sm = StateMachineStore::open(
                &dir.path().join("state.redb"),
                crate::raft::AuditRetention::default(),
            )
            .expect("open state");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn storage_passes_openraft_suite() {
        Suite::test_all(Builder).expect("openraft storage suite");
    }
}
