//! The hash-chained audit log, as the replicated state holds it: the chain head and a bounded
//! window of recent events. The whole retained history lives in the node's state-machine
//! database (`raft::sm_store`), which takes the events as they are appended (writing them in
//! batches) and drops the oldest past its retention, keeping a checkpoint of the chain at the
//! cut so what remains still verifies.
//!
//! ```text
//!   apply ─ append ─▶ AuditLog { head, recent (≤ RECENT), unsaved } ─ take_unsaved ─▶ redb
//!                                                                     (events by seq, checkpoint)
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Events the state keeps in memory (and in snapshots), newest last.
pub const RECENT: usize = 1_000;

/// One audit event, chained to the previous one by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// 1, 2, 3, ...
    pub seq: u64,
    /// The log index of the entry that produced it.
    pub index: u64,
    /// When, ms since the epoch (from the log entry).
    pub at_ms: u64,
    /// Who.
    pub actor: String,
    /// What, e.g. `config.stored`.
    pub action: String,
    /// To what.
    pub subject: String,
    /// Details; never a secret value.
    pub detail: String,
    /// The previous event's hash.
    pub prev_hash: String,
    /// SHA-256 over the fields above, hex.
    pub hash: String,
}

impl AuditEvent {
    /// The hash of an event's fields (everything but `hash`).
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.seq.to_string().as_str(),
            self.index.to_string().as_str(),
            self.at_ms.to_string().as_str(),
            &self.actor,
            &self.action,
            &self.subject,
            &self.detail,
            &self.prev_hash,
        ] {
            // Length-prefixed, so field boundaries cannot be shifted.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        hex(&hasher.finalize())
    }
}

/// Where a stored chain starts: the sequence number and hash of the last event before it (the
/// genesis, `0` and [`GENESIS_HASH`], when nothing was dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number of the last event before the chain.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Its time, ms since the epoch (0 for the genesis).
    pub at_ms: u64,
}

impl Checkpoint {
    /// The start of every chain.
    pub fn genesis() -> Checkpoint {
        Checkpoint { seq: 0, hash: GENESIS_HASH.to_owned(), at_ms: 0 }
    }

    /// The checkpoint just after `event`.
    pub fn after(event: &AuditEvent) -> Checkpoint {
        Checkpoint { seq: event.seq, hash: event.hash.clone(), at_ms: event.at_ms }
    }
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    dsops_proto::hex(bytes)
}

/// The audit log's replicated part: its head and its most recent events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditLog {
    /// The newest events, at most [`RECENT`], oldest first.
    recent: VecDeque<AuditEvent>,
    /// The last event before `recent` (the genesis until events are dropped from it).
    #[serde(default)]
    before_recent: Option<Checkpoint>,
    /// Events appended and not yet taken by the store, oldest first. Not replicated state: the
    /// store takes them after each applied batch, and a restart re-derives them by replaying the
    /// log after the snapshot.
    #[serde(skip)]
    unsaved: Vec<AuditEvent>,
    /// Every event, as snapshots before the history moved to the store held them: read once,
    /// then handed to the store ([`AuditLog::adopt_legacy`]).
    #[serde(default, rename = "events", skip_serializing)]
    legacy: Vec<AuditEvent>,
}

/// Equal when the replicated parts are: what the store has not taken yet is not state.
impl PartialEq for AuditLog {
    fn eq(&self, other: &AuditLog) -> bool {
        self.recent == other.recent && self.before_recent == other.before_recent
    }
}

impl Eq for AuditLog {}

impl AuditLog {
    /// Appends an event; returns its sequence number.
    pub fn append(
        &mut self,
        index: u64,
        at_ms: u64,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> u64 {
        let head = self.head();
        let seq = head.seq + 1;
        let mut event = AuditEvent {
            seq,
            index,
            at_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_owned(),
            prev_hash: head.hash,
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        self.unsaved.push(event.clone());
        self.recent.push_back(event);
        while self.recent.len() > RECENT {
            if let Some(dropped) = self.recent.pop_front() {
                self.before_recent = Some(Checkpoint::after(&dropped));
            }
        }
        seq
    }

    /// The most recent events (at most [`RECENT`]), oldest first; the node's store has the
    /// whole retained history.
    pub fn recent(&self) -> impl Iterator<Item = &AuditEvent> {
        self.recent.iter()
    }

    /// The recent events as a list (tests and small logs).
    pub fn events(&self) -> Vec<AuditEvent> {
        self.recent.iter().cloned().collect()
    }

    /// The chain head: the newest event's sequence number and hash.
    pub fn head(&self) -> Checkpoint {
        match self.recent.back() {
            Some(event) => Checkpoint::after(event),
            None => self.before_recent.clone().unwrap_or_else(Checkpoint::genesis),
        }
    }

    /// Where the recent window starts.
    pub fn recent_start(&self) -> Checkpoint {
        self.before_recent.clone().unwrap_or_else(Checkpoint::genesis)
    }

    /// Moves the events of a snapshot written before the store kept the history into the window
    /// and the unsaved list (for the store to write).
    pub fn adopt_legacy(&mut self) {
        for event in std::mem::take(&mut self.legacy) {
            self.unsaved.push(event.clone());
            self.recent.push_back(event);
            while self.recent.len() > RECENT {
                if let Some(dropped) = self.recent.pop_front() {
                    self.before_recent = Some(Checkpoint::after(&dropped));
                }
            }
        }
    }

    /// Takes the events appended since the last call (for the store).
    pub fn take_unsaved(&mut self) -> Vec<AuditEvent> {
        std::mem::take(&mut self.unsaved)
    }

    /// Checks a chain that starts after `start`; returns the first broken sequence number.
    pub fn verify_from(start: &Checkpoint, events: &[AuditEvent]) -> Result<(), u64> {
        let mut prev = start.hash.clone();
        let mut seq = start.seq;
        for event in events {
            if event.seq != seq + 1 || event.prev_hash != prev || event.compute_hash() != event.hash
            {
                return Err(event.seq);
            }
            prev = event.hash.clone();
            seq = event.seq;
        }
        Ok(())
    }

    /// Checks a chain that starts at the genesis.
    pub fn verify(events: &[AuditEvent]) -> Result<(), u64> {
        AuditLog::verify_from(&Checkpoint::genesis(), events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded_and_the_chain_continues_across_it() {
        let mut log = AuditLog::default();
        let mut all = Vec::new();
        for i in 0..(RECENT as u64 + 250) {
            log.append(i, i, "a", "x", "s", &i.to_string());
            all.extend(log.take_unsaved());
        }
        assert_eq!(log.recent().count(), RECENT);
        assert_eq!(all.len(), RECENT + 250);
        assert!(AuditLog::verify(&all).is_ok());
        let window = log.events();
        assert!(AuditLog::verify_from(&log.recent_start(), &window).is_ok());
        assert_eq!(log.recent_start().seq, 250);
        assert_eq!(log.head().seq, RECENT as u64 + 250);
        // A window checked from the wrong start does not verify.
        assert!(AuditLog::verify(&window).is_err());
    }
}
