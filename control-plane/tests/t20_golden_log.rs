//! The golden log fixtures: entries and a snapshot written by each log format (see
//! `tests/tests/t76_golden_log_writer.rs` for how they were made) still decode, and replaying the
//! entries through `apply` reaches exactly the state of the snapshot, whose hash is committed.
//! A change to the entry encoding, to a command's serialized form or to what `apply` does with an
//! old command fails here, before it can break a node that replays an older log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dsops_control_plane::raft::decode_entry;
use dsops_state::log_format::{LOG_FORMAT, LOG_MAGIC};
use dsops_state::{ApplyContext, State, apply, decode_snapshot, encode_snapshot};
use openraft::EntryPayload;
use sha2::{Digest, Sha256};

fn golden(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The records of a `log-vN.bin` fixture: each a little-endian u32 length, then the bytes as the
/// log store keeps them.
fn records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let (record, tail) = tail.split_at(len);
        records.push(record);
        rest = tail;
    }
    records
}

#[test]
fn every_log_format_replays_to_its_committed_state() {
    for format in 1..=LOG_FORMAT {
        let log = golden(&format!("log-v{format}.bin"));
        let mut state = State::default();
        let mut kinds = BTreeSet::new();
        let mut last_index: Option<u64> = None;
        let mut newest = 0;
        for record in records(&log) {
            assert!(record.starts_with(LOG_MAGIC), "format {format}: a record without the marker");
            // An entry is written in the oldest format that carries its commands.
            let written = record[LOG_MAGIC.len()];
            assert!(written <= format, "format {format}: a record of format {written}");
            newest = newest.max(written);
            let entry = decode_entry(record).unwrap_or_else(|e| panic!("format {format}: {e}"));
            let expected = last_index.map_or(0, |index| index + 1);
            assert_eq!(entry.log_id.index, expected, "entries are consecutive from the first");
            last_index = Some(entry.log_id.index);
            match &entry.payload {
                EntryPayload::Blank => {
                    kinds.insert("blank".to_owned());
                }
                EntryPayload::Membership(_) => {
                    kinds.insert("membership".to_owned());
                }
                EntryPayload::Normal(proposal) => {
                    for request in &proposal.0 {
                        let command = serde_json::to_value(&request.command).unwrap();
                        kinds.insert(command["type"].as_str().unwrap().to_owned());
                        apply(&mut state, request, ApplyContext { index: entry.log_id.index });
                    }
                }
            }
        }
        assert_eq!(newest, format, "the fixture of format {format} holds no entry of it");
        // The fixture exercises the log, not one command: membership, configuration, agents,
        // runs and receipts.
        assert!(kinds.len() >= 6, "format {format} covers only {kinds:?}");

        let snapshot = decode_snapshot(&golden(&format!("snapshot-v{format}.bin"))).unwrap();
        assert!(snapshot == state, "format {format}: replaying the log differs from the snapshot");
        let hash = dsops_proto::hex(&Sha256::digest(encode_snapshot(&state)));
        let committed = String::from_utf8(golden(&format!("state-v{format}.sha256"))).unwrap();
        assert_eq!(
            hash,
            committed.trim(),
            "format {format}: replay reaches another state than the committed one (entry kinds {kinds:?})"
        );
    }
}

#[test]
fn a_record_of_a_newer_format_is_refused_with_a_clear_error() {
    let log = golden(&format!("log-v{LOG_FORMAT}.bin"));
    let mut record = records(&log)[0].to_vec();
    record[LOG_MAGIC.len()] = LOG_FORMAT + 1;
    let error = decode_entry(&record).unwrap_err().to_string();
    assert!(error.contains("newer than this release"), "{error}");
}
