//! Audit events gathered between store writes: read back at once, stored before a snapshot.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};

use super::{AUDIT_BATCH, StateMachineStore, audit_store};
use crate::raft::{AuditRetention, Proposal, TypeConfig};
use dsops_state::{Command, Request};

/// Entries `from..to`, each appending one audit event.
fn audited(from: u64, to: u64) -> Vec<Entry<TypeConfig>> {
    (from..to)
        .map(|index| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal(vec![Request {
                request_id: format!("audit-{index}"),
                actor: "node-1".into(),
                proposed_at_ms: 1_000 + index,
                command: Command::AppendAudit {
                    action: "test.event".into(),
                    subject: format!("entry {index}"),
                    detail: String::new(),
                },
            }])),
        })
        .collect()
}

fn open(path: &std::path::Path) -> StateMachineStore {
    StateMachineStore::open(path, AuditRetention::default()).expect("open the state store")
}

#[tokio::test]
async fn audit_events_are_read_back_at_once_and_stored_before_a_snapshot() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("state.redb");
    let mut sm = open(&path);

    sm.apply(audited(1, 4)).await.expect("apply");
    // Fewer than a batch: not written yet, and still every one of them in a read.
    assert_eq!(audit_store::count(&sm.db).expect("count"), 0);
    let history = sm.audit(0, usize::MAX).expect("read the history");
    let subjects: Vec<_> = history.events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(subjects, ["entry 1", "entry 2", "entry 3"]);
    assert_eq!(history.verify(), Ok(()));

    // Applied after the read, then a snapshot: the store that opens afterwards has them all,
    // in a chain that verifies, although nothing read them before the snapshot.
    sm.apply(audited(4, 7)).await.expect("apply");
    assert_eq!(audit_store::count(&sm.db).expect("count"), 3);
    sm.build_snapshot().await.expect("snapshot");
    drop(sm);
    let reopened = open(&path);
    let history = audit_store::read(&reopened.db, 0, usize::MAX).expect("read the store");
    assert_eq!(history.events.len(), 6);
    assert_eq!(history.events.last().map(|e| e.index), Some(6));
    assert_eq!(history.verify(), Ok(()));
}

#[tokio::test]
async fn a_full_batch_of_audit_events_is_written_without_a_read() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut sm = open(&dir.path().join("state.redb"));
    let batch = AUDIT_BATCH as u64;
    sm.apply(audited(1, batch)).await.expect("apply");
    assert_eq!(audit_store::count(&sm.db).expect("count"), 0, "one short of a batch waits");
    sm.apply(audited(batch, batch + 1)).await.expect("apply");
    assert_eq!(audit_store::count(&sm.db).expect("count"), batch, "a full batch is written");
    assert!(sm.pending_audit.lock().expect("lock").is_empty());
}
