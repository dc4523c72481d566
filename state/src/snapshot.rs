//! The snapshot encoding: a magic marker with a format version, then the state as JSON.
//!
//! A later release reads older formats by looking at the version byte; a snapshot from a newer
//! release is refused with a clear error instead of being misread.

use super::State;

/// `DSOPSSM` then the format version.
pub const SNAPSHOT_MAGIC: &[u8; 7] = b"DSOPSSM";
/// The format this release writes.
pub const SNAPSHOT_FORMAT: u8 = 1;

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a dsops snapshot.
    #[error("not a dsops state snapshot (bad magic)")]
    BadMagic,
    /// Written by a newer release.
    #[error(
        "snapshot format {0} is newer than this release reads ({SNAPSHOT_FORMAT}); upgrade dsops-server"
    )]
    TooNew(u8),
    /// Corrupt.
    #[error("snapshot body is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Encodes the state.
pub fn encode_snapshot(state: &State) -> Vec<u8> {
    let mut bytes = SNAPSHOT_MAGIC.to_vec();
    bytes.push(SNAPSHOT_FORMAT);
    serde_json::to_writer(&mut bytes, state)
        .expect("State serializes: it holds only strings, numbers and maps");
    bytes
}

/// Decodes a snapshot of any format this release understands.
pub fn decode_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
    let rest = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()).ok_or(SnapshotError::BadMagic)?;
    let (&format, body) = rest.split_first().ok_or(SnapshotError::BadMagic)?;
    match format {
        1 => {
            let mut state: State = serde_json::from_slice(body)?;
            state.audit.adopt_legacy();
            state.rebuild_indexes();
            Ok(state)
        }
        newer => Err(SnapshotError::TooNew(newer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApplyContext, Command, Request, apply};

    #[test]
    fn round_trip_and_version_checks() {
        let mut state = State::default();
        let request = Request {
            request_id: "r".into(),
            actor: "a".into(),
            proposed_at_ms: 5,
            command: Command::AppendAudit {
                action: "x".into(),
                subject: "y".into(),
                detail: "z".into(),
            },
        };
        apply(&mut state, &request, ApplyContext { index: 1 });
        let bytes = encode_snapshot(&state);
        assert_eq!(decode_snapshot(&bytes).unwrap(), state);
        let mut newer = bytes.clone();
        newer[7] = 9;
        assert!(matches!(decode_snapshot(&newer), Err(SnapshotError::TooNew(9))));
        assert!(matches!(decode_snapshot(b"garbage"), Err(SnapshotError::BadMagic)));
        let mut cut = bytes;
        cut.truncate(20);
        assert!(matches!(decode_snapshot(&cut), Err(SnapshotError::Corrupt(_))));
    }
}
