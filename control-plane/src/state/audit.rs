use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    dsops_proto::hex(bytes)
}

/// The hash-chained audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    events: Vec<AuditEvent>,
}

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
        let prev_hash =
            self.events.last().map_or_else(|| GENESIS_HASH.to_owned(), |e| e.hash.clone());
        let seq = self.events.len() as u64 + 1;
        let mut event = AuditEvent {
            seq,
            index,
            at_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            detail: detail.to_owned(),
            prev_hash,
            hash: String::new(),
        };
        event.hash = event.compute_hash();
        self.events.push(event);
        seq
    }

    /// All events, oldest first.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// The hash of the last event.
    pub fn head(&self) -> &str {
        self.events.last().map_or(GENESIS_HASH, |e| e.hash.as_str())
    }

    /// Checks the chain; returns the first broken sequence number.
    pub fn verify(events: &[AuditEvent]) -> Result<(), u64> {
        let mut prev = GENESIS_HASH.to_owned();
        for (i, event) in events.iter().enumerate() {
            if event.seq != i as u64 + 1
                || event.prev_hash != prev
                || event.compute_hash() != event.hash
            {
                return Err(event.seq);
            }
            prev = event.hash.clone();
        }
        Ok(())
    }
}
