//! The framing of what the replicated log stores and ships: a magic marker and a format version
//! in front of every encoded entry and command, as snapshots carry one ([`crate::SNAPSHOT_MAGIC`]).
//!
//! ```text
//!   b"DSOPSLG" · format (1 byte) · body (formats 1 and 2: JSON)
//! ```
//!
//! Format 2 has the body of format 1; what it adds is that a `store_config` command may bound
//! the configuration history by bytes (`history_bytes`), which a release reading only format 1
//! would ignore and so keep another history than its peers, and configurations sent in parts
//! (`stage_config_part`, `store_staged_config`): such a release refuses the entry instead. Only
//! entries that hold such a command are written as format 2 (`Command::log_format`), so during a
//! rolling upgrade the previous release's nodes keep applying everything else; an `apply` waits
//! until they are upgraded.
//!
//! A release reads every format up to [`LOG_FORMAT`] and refuses a newer one with a clear error
//! instead of misreading it. Entries written before the marker existed (a bare JSON body) read as
//! format 0, whose body is the same as format 1's. The committed golden fixtures
//! (`control-plane/tests/golden/`) hold entries and a snapshot of each format; the gate replays
//! them, so a change that breaks an old log fails before it ships.

/// The marker in front of every log entry and replicated command.
pub const LOG_MAGIC: &[u8; 7] = b"DSOPSLG";
/// The format this release writes.
pub const LOG_FORMAT: u8 = 2;

/// Why a stored entry or command cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFormatError {
    /// Neither the marker nor a legacy JSON body.
    #[error("not a dsops log record (no {} marker)", String::from_utf8_lossy(LOG_MAGIC))]
    BadMagic,
    /// Written by a newer release.
    #[error("log format {0} is newer than this release reads ({LOG_FORMAT}); upgrade dsops-server")]
    TooNew(u8),
}

/// `body` framed as format [`LOG_FORMAT`].
pub fn frame(body: &[u8]) -> Vec<u8> {
    frame_as(LOG_FORMAT, body)
}

/// `body` framed as `format` (an entry is written in the oldest format that carries its
/// commands: `Command::log_format`).
pub fn frame_as(format: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(LOG_MAGIC.len() + 1 + body.len());
    bytes.extend_from_slice(LOG_MAGIC);
    bytes.push(format);
    bytes.extend_from_slice(body);
    bytes
}

/// The format and body of a framed record; a bare JSON object or array is format 0.
pub fn unframe(bytes: &[u8]) -> Result<(u8, &[u8]), LogFormatError> {
    if let Some(rest) = bytes.strip_prefix(LOG_MAGIC.as_slice()) {
        let (&format, body) = rest.split_first().ok_or(LogFormatError::BadMagic)?;
        return match format {
            0..=LOG_FORMAT => Ok((format, body)),
            newer => Err(LogFormatError::TooNew(newer)),
        };
    }
    match bytes.first() {
        Some(b'{' | b'[') => Ok((0, bytes)),
        _ => Err(LogFormatError::BadMagic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_bodies_round_trip_and_newer_or_foreign_records_are_refused() {
        let framed = frame(b"{\"a\":1}");
        assert_eq!(unframe(&framed), Ok((LOG_FORMAT, b"{\"a\":1}".as_slice())));
        assert_eq!(unframe(b"[1,2]"), Ok((0, b"[1,2]".as_slice())));
        let mut newer = framed.clone();
        newer[LOG_MAGIC.len()] = LOG_FORMAT + 1;
        assert_eq!(unframe(&newer), Err(LogFormatError::TooNew(LOG_FORMAT + 1)));
        assert!(unframe(&newer).unwrap_err().to_string().contains("upgrade dsops-server"));
        assert_eq!(unframe(b"DSOPSLG"), Err(LogFormatError::BadMagic));
        assert_eq!(unframe(b"garbage"), Err(LogFormatError::BadMagic));
        assert_eq!(unframe(b""), Err(LogFormatError::BadMagic));
    }
}
