//! Writes the golden log fixtures `control-plane/tests/golden/{log,snapshot,state}-vN.*` for the
//! current log format from a real run: the embedded default applies a configuration, attaches
//! its agent and rotates two secrets (one twice), then the node's raft log is read back as stored.
//!
//! Run it only when a new log format is introduced (the fixtures of an existing format are never
//! rewritten: they stand for logs already on disk):
//!
//! ```text
//! DSOPS_WRITE_GOLDEN=1 cargo test -p dsops-tests --test t76_golden_log_writer -- --ignored
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::RunView;
use std::path::PathBuf;

use dsops_control_plane::raft::{LogStore, encode_entry};
use dsops_state::log_format::LOG_FORMAT;
use dsops_state::{ApplyContext, State, apply, encode_snapshot};
use dsops_tests::rotation::{Project, rotate};
use openraft::storage::RaftLogStorage;
use openraft::{EntryPayload, RaftLogReader};
use sha2::{Digest, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fixtures; run with DSOPS_WRITE_GOLDEN=1 when a new log format is introduced"]
async fn write_golden_fixtures() {
    assert!(std::env::var_os("DSOPS_WRITE_GOLDEN").is_some(), "set DSOPS_WRITE_GOLDEN=1");
    let project = Project::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  dev:\n    JWT_SIGNING_KEY:\n      from: { store: \"store://local/app/jwt#key\" }\n      rotation: { strategy: random, config: { length: 64, charset: hex } }\n    SESSION_KEY:\n      from: { store: \"store://local/app/session#key\" }\n      rotation: { strategy: random, config: { length: 32 } }\n",
    );
    let embedded = project.open().await;
    for key in ["JWT_SIGNING_KEY", "SESSION_KEY", "JWT_SIGNING_KEY"] {
        assert_eq!(rotate(&embedded, "dev", key).await.state_name(), "Completed");
    }
    embedded.close().await;

    let mut store = LogStore::open(&project.state.join("cluster").join("raft-log"), None).unwrap();
    let log_state = store.get_log_state().await.unwrap();
    assert!(log_state.last_purged_log_id.is_none(), "the fixture needs the whole log");
    let entries = store.get_log_reader().await.try_get_log_entries(0..).await.unwrap();

    let mut records = Vec::new();
    let mut state = State::default();
    for entry in &entries {
        let bytes = encode_entry(entry).unwrap();
        records.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_le_bytes());
        records.extend_from_slice(&bytes);
        if let EntryPayload::Normal(proposal) = &entry.payload {
            for request in &proposal.0 {
                apply(&mut state, request, ApplyContext { index: entry.log_id.index });
            }
        }
    }
    let snapshot = encode_snapshot(&state);
    let hash = dsops_proto::hex(&Sha256::digest(&snapshot));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../control-plane/tests/golden");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("log-v{LOG_FORMAT}.bin")), records).unwrap();
    std::fs::write(dir.join(format!("snapshot-v{LOG_FORMAT}.bin")), snapshot).unwrap();
    std::fs::write(dir.join(format!("state-v{LOG_FORMAT}.sha256")), format!("{hash}\n")).unwrap();
    eprintln!("wrote {} entries, state {hash}", entries.len());
}
