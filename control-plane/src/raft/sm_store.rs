//! The state machine store: the [`State`] in memory, applied entry by entry, with snapshots
//! persisted in redb so a restart resumes from the last snapshot plus the log after it.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::audit_store::{self, AuditHistory, AuditRetention};
use super::{Applied, NodeId, TypeConfig, storage_error};
use dsops_state::{ApplyContext, AuditEvent, State, apply, decode_snapshot, encode_snapshot};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const CURRENT: &str = "current";
/// Audit events applied but not yet written to the store are written once this many gather (and
/// before the history is read or a snapshot stored): one store commit per few hundred events,
/// not one per applied batch (it was ~9 % of the embedded default's CPU per rotation).
const AUDIT_BATCH: usize = 512;

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// What is applied: the state, and where in the log it stands.
#[derive(Debug, Default)]
struct Current {
    state: State,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, openraft::BasicNode>,
}

/// A snapshot as stored: its metadata and the encoded state.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine. Cheap to clone; clones share the state.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    applied: Arc<RwLock<Current>>,
    db: Arc<Database>,
    snapshot_seq: Arc<AtomicU64>,
    retention: AuditRetention,
    /// Audit events applied and not yet in the store, oldest first (fewer than [`AUDIT_BATCH`]
    /// between writes). They were never durable on their own: the store writes events without
    /// waiting for the disk, and a restart re-derives them by replaying the log after the last
    /// snapshot, whose durable commit comes after they are written.
    pending_audit: Arc<Mutex<Vec<AuditEvent>>>,
    /// Bumped after applying what may end an agent's session (a revocation, a snapshot that
    /// replaced the state): sessions look at the state then, not on a timer.
    revocations: Arc<tokio::sync::watch::Sender<u64>>,
}

fn snapshot_err<E: std::error::Error + 'static>(error: E) -> StorageError<NodeId> {
    storage_error(|e| StorageIOError::write_snapshot(None, e), error)
}

impl StateMachineStore {
    /// A notice of what may end agent sessions: it changes after a revocation (of an agent or
    /// of a certificate) was applied, or a snapshot replaced the state.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Opens the snapshot database at `path` and loads the last snapshot, if any; the audit
    /// history is kept for `retention`.
    pub fn open(
        path: &Path,
        retention: AuditRetention,
    ) -> std::result::Result<StateMachineStore, Box<dyn std::error::Error + Send + Sync>> {
        let db = super::open_database(path)?;
        let store = StateMachineStore {
            applied: Arc::default(),
            db: Arc::new(db),
            snapshot_seq: Arc::default(),
            retention,
            pending_audit: Arc::default(),
            revocations: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        if let Some(stored) = store.read_stored()? {
            let mut state = decode_snapshot(&stored.data)?;
            // A snapshot of an earlier release carries the whole history: into the store.
            audit_store::save(
                &store.db,
                &state.audit.take_unsaved(),
                None,
                retention,
                dsops_proto::now_ms(),
            )?;
            let mut applied = store.applied.try_write().expect("no other holder while opening");
            *applied = Current {
                state,
                last_applied: stored.meta.last_log_id,
                last_membership: stored.meta.last_membership,
            };
        }
        Ok(store)
    }

    fn read_stored(
        &self,
    ) -> std::result::Result<Option<StoredSnapshot>, Box<dyn std::error::Error + Send + Sync>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(SNAPSHOTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        match table.get(CURRENT)? {
            Some(value) => Ok(Some(serde_json::from_slice(value.value())?)),
            None => Ok(None),
        }
    }

    /// Stores a snapshot unless the stored one is newer: a snapshot built from older state may
    /// finish after a newer one was installed, and must not replace it (the log before the newer
    /// one may already be purged).
    fn write_stored(&self, stored: &StoredSnapshot) -> Result<()> {
        let bytes = serde_json::to_vec(stored).map_err(snapshot_err)?;
        let txn = self.db.begin_write().map_err(snapshot_err)?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(snapshot_err)?;
            let current: Option<StoredSnapshot> = match table.get(CURRENT).map_err(snapshot_err)? {
                Some(value) => serde_json::from_slice(value.value()).ok(),
                None => None,
            };
            if current.is_some_and(|c| c.meta.last_log_id > stored.meta.last_log_id) {
                return Ok(());
            }
            table.insert(CURRENT, bytes.as_slice()).map_err(snapshot_err)?;
        }
        txn.commit().map_err(snapshot_err)
    }

    /// Reads the state (for queries; make the read linearizable through raft first when it must
    /// be current).
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.applied.read().await.state)
    }

    /// The audit history this node keeps, after sequence number `after`, at most `limit`
    /// events: every event applied so far, the pending ones written first.
    pub fn audit(
        &self,
        after: u64,
        limit: usize,
    ) -> std::result::Result<AuditHistory, Box<dyn std::error::Error + Send + Sync>> {
        self.write_pending_audit()?;
        audit_store::read(&self.db, after, limit)
    }

    /// How many audit events this node keeps.
    pub fn audit_len(&self) -> std::result::Result<u64, Box<dyn std::error::Error + Send + Sync>> {
        self.write_pending_audit()?;
        audit_store::count(&self.db)
    }

    /// Adds `events` (just applied, in order) to the pending ones and writes them all to the
    /// store once at least `batch` are pending (0: whatever is pending). On an error the events
    /// stay pending.
    fn keep_audit(
        &self,
        events: Vec<AuditEvent>,
        batch: usize,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut pending = self.pending_audit.lock().expect("pending audit lock");
        pending.extend(events);
        if pending.is_empty() || pending.len() < batch {
            return Ok(());
        }
        audit_store::save(&self.db, &pending, None, self.retention, dsops_proto::now_ms())?;
        pending.clear();
        Ok(())
    }

    /// Writes whatever audit events are pending.
    fn write_pending_audit(
        &self,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.keep_audit(Vec::new(), 0)
    }

    /// The last applied log id.
    pub async fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.applied.read().await.last_applied
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (data, last_applied, last_membership) = {
            let applied = self.applied.read().await;
            // Every event up to the snapshot into the store before the snapshot's durable
            // commit: the log behind the snapshot may be purged after it. Applying waits for
            // this lock, so what is pending is exactly what the snapshot covers.
            self.write_pending_audit().map_err(|e| snapshot_err(BoxedError(e)))?;
            (encode_snapshot(&applied.state), applied.last_applied, applied.last_membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => {
                format!("{}-{}-{}-{seq}", id.leader_id.term, id.leader_id.node_id, id.index)
            }
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.write_stored(&stored)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, openraft::BasicNode>)> {
        let applied = self.applied.read().await;
        Ok((applied.last_applied, applied.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.write().await;
        let mut responses = Vec::new();
        let mut revoked = false;
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => Applied(Vec::new()),
                EntryPayload::Normal(proposal) => {
                    revoked |= proposal.0.iter().any(|r| r.command.may_end_agent_sessions());
                    Applied(
                        proposal
                            .0
                            .iter()
                            .map(|request| {
                                apply(&mut applied.state, request, ApplyContext { index })
                            })
                            .collect(),
                    )
                }
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Applied(Vec::new())
                }
            };
            responses.push(response);
        }
        let events = applied.state.audit.take_unsaved();
        self.keep_audit(events, AUDIT_BATCH)
            .map_err(|e| storage_error(StorageIOError::write_state_machine, BoxedError(e)))?;
        drop(applied);
        if revoked {
            self.revocations.send_modify(|epoch| *epoch += 1);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let mut state = decode_snapshot(&data)
            .map_err(|e| storage_error(|e| StorageIOError::read_snapshot(None, e), e))?;
        // Hold the state while storing, so a snapshot being built cannot interleave.
        let mut applied = self.applied.write().await;
        // What was applied before it first, so the stored history has no gap before the window.
        self.write_pending_audit().map_err(|e| {
            storage_error(|e| StorageIOError::write_snapshot(None, e), BoxedError(e))
        })?;
        // The snapshot's window of recent events joins (or restarts) the stored history.
        let mut window = state.audit.take_unsaved();
        if window.is_empty() {
            window = state.audit.events();
        }
        let start = state.audit.recent_start();
        audit_store::save(&self.db, &window, Some(&start), self.retention, dsops_proto::now_ms())
            .map_err(|e| storage_error(|e| StorageIOError::write_snapshot(None, e), BoxedError(e)))?;
        self.write_stored(&StoredSnapshot { meta: meta.clone(), data })?;
        *applied = Current {
            state,
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
        };
        self.revocations.send_modify(|epoch| *epoch += 1);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let stored = self.read_stored().map_err(|e| {
            storage_error(|e| StorageIOError::read_snapshot(None, e), BoxedError(e))
        })?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// Adapts a boxed error to `std::error::Error + 'static` for [`storage_error`].
#[derive(Debug)]
struct BoxedError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BoxedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BoxedError {}

#[cfg(test)]
#[path = "sm_store_tests.rs"]
mod tests;
