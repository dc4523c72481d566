//! The audit log's retained history, in the state-machine database beside the snapshots: events
//! by sequence number, and the checkpoint of the chain before the first of them.
//!
//! Events are written a few hundred at a time as they are applied (and before any read of the
//! history, see `sm_store`), without waiting for the disk (a crash loses only what the raft log
//! replays anyway); the snapshot's own commit, which is durable, comes after the events it covers
//! are written and makes them durable before the log behind it can be purged. Past the retention (an age, a count)
//! the oldest events are dropped and the checkpoint moves to the last one dropped, so the chain
//! that remains verifies from it.
//!
//! The cut falls where a signed checkpoint still in the history attests it: the last event
//! dropped is one a kept `audit.checkpoint` event signed, so the retained history starts at a
//! hash the evidence key vouches for, not only this node. An index of the signed sequence
//! numbers makes finding that cut one lookup. When no signed checkpoint falls in what is due to
//! go (a cluster without an evidence key yet, or more than [`UNSIGNED_CUT_AFTER`] events between
//! two checkpoints), the history keeps up to that many events past its bound and is then cut
//! where the retention says, unsigned.

use std::time::Duration;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use dsops_state::{AuditEvent, AuditLog, CHECKPOINT_ACTION, Checkpoint, SignedCheckpoint};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_events");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("audit_meta");
const CHECKPOINT: &str = "checkpoint";
/// Sequence numbers that a stored `audit.checkpoint` event signs → that event's own.
const SIGNED: TableDefinition<u64, u64> = TableDefinition::new("audit_signed");
/// Events kept past the retention while waiting for a cut a signed checkpoint attests.
pub const UNSIGNED_CUT_AFTER: u64 = 5_000;
/// Events dropped at most per batch, so compaction never stalls applying.
const DROP_PER_BATCH: usize = 10_000;

/// How long and how many audit events a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRetention {
    /// Events older than this are dropped.
    pub max_age: Duration,
    /// At most this many events are kept.
    pub max_events: u64,
}

impl Default for AuditRetention {
    fn default() -> AuditRetention {
        // Longer than a year, the period compliance standards ask evidence for.
        AuditRetention { max_age: Duration::from_secs(400 * 24 * 3600), max_events: 5_000_000 }
    }
}

/// The stored history: where it starts and its events, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHistory {
    /// The checkpoint before the first event (the genesis when nothing was dropped).
    pub start: Checkpoint,
    /// The events, oldest first.
    pub events: Vec<AuditEvent>,
}

impl AuditHistory {
    /// Whether the chain verifies from its checkpoint; the first broken sequence number if not.
    pub fn verify(&self) -> Result<(), u64> {
        AuditLog::verify_from(&self.start, &self.events)
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Failure> {
    Ok(serde_json::to_vec(value)?)
}

/// Reads the checkpoint (the genesis if none was stored).
fn checkpoint(txn: &redb::ReadTransaction) -> Result<Checkpoint, Failure> {
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Checkpoint::genesis()),
        Err(error) => return Err(error.into()),
    };
    Ok(match table.get(CHECKPOINT)? {
        Some(value) => serde_json::from_slice(value.value())?,
        None => Checkpoint::genesis(),
    })
}

/// Writes `events` (appended in this order, by applying the log), then drops what the retention
/// no longer keeps. `now_ms` is this node's clock: retention is local housekeeping, not
/// replicated state. When `events` do not follow what is stored (a snapshot installed far
/// ahead), the stored history restarts at `window_start`.
pub fn save(
    db: &Database,
    events: &[AuditEvent],
    window_start: Option<&Checkpoint>,
    retention: AuditRetention,
    now_ms: u64,
) -> Result<(), Failure> {
    let Some(first) = events.first() else { return Ok(()) };
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    {
        let mut table = txn.open_table(EVENTS)?;
        let mut meta = txn.open_table(META)?;
        let mut signed = txn.open_table(SIGNED)?;
        let last_stored = table.last()?.map(|(seq, _)| seq.value());
        let stored_start: Checkpoint = match meta.get(CHECKPOINT)? {
            Some(value) => serde_json::from_slice(value.value())?,
            None => Checkpoint::genesis(),
        };
        let follows = first.seq <= last_stored.unwrap_or(stored_start.seq) + 1;
        if !follows {
            let start = window_start.cloned().unwrap_or_else(|| Checkpoint {
                seq: first.seq - 1,
                hash: first.prev_hash.clone(),
                at_ms: 0,
            });
            tracing::warn!(
                stored = ?last_stored,
                next = first.seq,
                "audit history restarts at a checkpoint (a snapshot was installed far ahead)"
            );
            table.retain(|_, _| false)?;
            signed.retain(|_, _| false)?;
            meta.insert(CHECKPOINT, encode(&start)?.as_slice())?;
        }
        for event in events {
            table.insert(event.seq, encode(event)?.as_slice())?;
            if event.action == CHECKPOINT_ACTION
                && let Some(checkpoint) = SignedCheckpoint::from_detail(&event.detail)
                && checkpoint.seq < event.seq
            {
                signed.insert(checkpoint.seq, event.seq)?;
            }
        }
        // Retention: drop from the oldest end.
        let cutoff_ms = now_ms.saturating_sub(retention.max_age.as_millis() as u64);
        let oldest = table.first()?.map(|(seq, _)| seq.value());
        let newest = table.last()?.map(|(seq, _)| seq.value());
        let (Some(oldest), Some(newest)) = (oldest, newest) else {
            return Err("audit table emptied while writing".into());
        };
        let over_count = (newest - oldest + 1).saturating_sub(retention.max_events);
        let mut drop_until = oldest.saturating_sub(1) + over_count;
        let mut last_dropped: Option<AuditEvent> = None;
        for entry in table.range(oldest..=newest)?.take(DROP_PER_BATCH) {
            let (seq, value) = entry?;
            let seq = seq.value();
            let event: AuditEvent = serde_json::from_slice(value.value())?;
            if seq > drop_until && event.at_ms >= cutoff_ms {
                break;
            }
            drop_until = drop_until.max(seq);
            last_dropped = Some(event);
        }
        if let Some(dropped) = last_dropped {
            // The last event due to go that a kept checkpoint signed; failing one, the retention's
            // own cut once the history is past its bound by UNSIGNED_CUT_AFTER.
            let attested = signed
                .range(oldest..=dropped.seq)?
                .next_back()
                .transpose()?
                .map(|(seq, _)| seq.value());
            let cut = match attested {
                Some(seq) => Some(seq),
                None if dropped.seq + 1 - oldest >= UNSIGNED_CUT_AFTER => Some(dropped.seq),
                None => None,
            };
            if let Some(cut) = cut {
                let at_cut: AuditEvent = match table.get(cut)? {
                    Some(value) => serde_json::from_slice(value.value())?,
                    None => return Err(format!("audit event {cut} missing below the cut").into()),
                };
                table.retain_in(..=cut, |_, _| false)?;
                signed.retain_in(..=cut, |_, _| false)?;
                meta.insert(CHECKPOINT, encode(&Checkpoint::after(&at_cut))?.as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The stored history after sequence number `after` (0: all of it), at most `limit` events.
pub fn read(db: &Database, after: u64, limit: usize) -> Result<AuditHistory, Failure> {
    let txn = db.begin_read()?;
    let mut start = checkpoint(&txn)?;
    let table = match txn.open_table(EVENTS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(AuditHistory { start, events: Vec::new() });
        }
        Err(error) => return Err(error.into()),
    };
    let mut events = Vec::new();
    for entry in table.range(after.saturating_add(1)..)?.take(limit) {
        let (_, value) = entry?;
        events.push(serde_json::from_slice::<AuditEvent>(value.value())?);
    }
    if let Some(first) = events.first()
        && first.seq > start.seq + 1
    {
        // The caller asked for a later part: it starts after the event before it.
        start = Checkpoint { seq: first.seq - 1, hash: first.prev_hash.clone(), at_ms: 0 };
    }
    Ok(AuditHistory { start, events })
}

/// How many events are stored.
pub fn count(db: &Database) -> Result<u64, Failure> {
    let txn = db.begin_read()?;
    match txn.open_table(EVENTS) {
        Ok(table) => Ok(table.len()?),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(
        log: &mut AuditLog,
        from: u64,
        to: u64,
        at_ms: impl Fn(u64) -> u64,
    ) -> Vec<AuditEvent> {
        for i in from..to {
            log.append(i, at_ms(i), "node-1", "test", "s", &format!("event {i}"));
        }
        log.take_unsaved()
    }

    /// Like [`chain`], with a signed checkpoint of the event before it every 10th event (the
    /// signature is not checked here).
    fn signed_chain(log: &mut AuditLog, from: u64, to: u64, at_ms: u64) -> Vec<AuditEvent> {
        for i in from..to {
            if i % 10 == 9 {
                let head = log.head();
                let checkpoint = SignedCheckpoint {
                    generation: 1,
                    seq: head.seq,
                    hash: head.hash,
                    at_ms: head.at_ms,
                    signature_hex: "00".repeat(64),
                };
                log.append(i, at_ms, "node-1", CHECKPOINT_ACTION, "audit", &checkpoint.to_detail());
            } else {
                log.append(i, at_ms, "node-1", "test", "s", &format!("event {i}"));
            }
        }
        log.take_unsaved()
    }

    /// The retained history starts right after an event that one of its own checkpoints signs.
    fn starts_at_a_signed_checkpoint(history: &AuditHistory) -> bool {
        history.events.iter().filter(|e| e.action == CHECKPOINT_ACTION).any(|e| {
            SignedCheckpoint::from_detail(&e.detail)
                .is_some_and(|c| c.seq == history.start.seq && c.hash == history.start.hash)
        })
    }

    #[test]
    fn retention_cuts_at_a_signed_checkpoint_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("state.redb")).expect("db");
        let retention = AuditRetention { max_age: Duration::from_secs(3600), max_events: 100 };
        let mut log = AuditLog::default();
        // 250 events in batches (seq 1..=250, checkpoints at 10, 20, ... signing 9, 19, ...):
        // the newest 100 are due to stay (151..), and the cut goes back to 149, the last event
        // due to go that a kept checkpoint (150) signed.
        for batch in 0..5 {
            let events = signed_chain(&mut log, batch * 50, batch * 50 + 50, 10_000_000);
            save(&db, &events, None, retention, 10_000_000).expect("save");
        }
        let history = read(&db, 0, usize::MAX).expect("read");
        assert_eq!(history.start.seq, 149);
        assert_eq!(history.events.len(), 101);
        assert_eq!(history.events[0].seq, 150);
        assert!(starts_at_a_signed_checkpoint(&history), "{:?}", history.start);
        assert!(history.verify().is_ok());
        assert_eq!(count(&db).expect("count"), 101);
        // Writing the same events again (a replay after a restart) changes nothing.
        let mut replayed = AuditLog::default();
        let again = signed_chain(&mut replayed, 0, 250, 10_000_000);
        save(&db, &again[200..], None, retention, 10_000_000).expect("replay");
        assert_eq!(read(&db, 0, usize::MAX).expect("read"), history);
        // Age: every event older than an hour before `now` (..=250) is due to go; the cut backs
        // off to 249, which the checkpoint 250 signs, and 250..=261 stay.
        let events = signed_chain(&mut log, 250, 261, 20_000_000);
        save(&db, &events, None, retention, 10_000_000 + 3_600_000 + 1).expect("save");
        let history = read(&db, 0, usize::MAX).expect("read");
        assert_eq!(history.start.seq, 249);
        assert!(starts_at_a_signed_checkpoint(&history), "{:?}", history.start);
        assert_eq!(history.events.len(), 12);
        assert!(history.verify().is_ok());
        // A tampered event is found.
        let mut tampered = history.clone();
        tampered.events[3].detail.push('!');
        assert_eq!(tampered.verify(), Err(tampered.events[3].seq));
    }

    #[test]
    fn without_signed_checkpoints_the_cut_waits_a_bounded_number_of_events() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("state.redb")).expect("db");
        let retention = AuditRetention { max_age: Duration::from_secs(3600), max_events: 100 };
        let mut log = AuditLog::default();
        let mut most = 0;
        for batch in 0..60 {
            let events = chain(&mut log, batch * 100, batch * 100 + 100, |_| 10_000_000);
            save(&db, &events, None, retention, 10_000_000).expect("save");
            most = most.max(count(&db).expect("count"));
        }
        let history = read(&db, 0, usize::MAX).expect("read");
        assert!(history.start.seq > 0, "the history was cut");
        assert!(most <= 100 + UNSIGNED_CUT_AFTER, "kept {most}");
        assert!(history.verify().is_ok());
    }

    #[test]
    fn a_window_far_ahead_restarts_the_history_at_its_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Database::create(dir.path().join("state.redb")).expect("db");
        let retention = AuditRetention::default();
        let mut log = AuditLog::default();
        let early = chain(&mut log, 0, 10, |i| i);
        save(&db, &early, None, retention, 0).expect("save");
        chain(&mut log, 10, 2_000, |i| i);
        let window = log.events();
        save(&db, &window, Some(&log.recent_start()), retention, 0).expect("install");
        let history = read(&db, 0, usize::MAX).expect("read");
        assert_eq!(history.start, log.recent_start());
        assert_eq!(history.events.len(), dsops_state::RECENT);
        assert!(history.verify().is_ok());
    }
}
