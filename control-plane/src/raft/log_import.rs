//! Moves a raft log from the redb file of earlier releases (`raft-log.redb`) into segment files.
//!
//! The entries, vote, committed id and purge point are written to a staging directory beside
//! the new one, made durable, and the directory renamed into place; only then is the redb file
//! removed. A crash at any point leaves either the old file (the import starts over) or the new
//! directory (the leftover file is removed).

use std::io;
use std::path::Path;

use openraft::LogId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::NodeId;
use super::segments::{Change, Segments};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Entries written per batch while importing.
const BATCH: usize = 1024;

/// Imports `legacy` into `dir` when the file exists (see the module documentation).
pub(crate) fn import(legacy: &Path, dir: &Path) -> io::Result<()> {
    if !legacy.exists() {
        return Ok(());
    }
    // One importer at a time (two processes opening the same directory after an upgrade).
    let _importing = super::segments::lock(&dir.with_extension("import-lock"))?;
    if !legacy.exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        let staging = dir.with_extension("import");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        copy(legacy, &staging).map_err(|e| {
            io::Error::new(e.kind(), format!("importing the raft log {}: {e}", legacy.display()))
        })?;
        std::fs::rename(&staging, dir)?;
        std::fs::File::open(parent)?.sync_all()?;
        tracing::info!(from = %legacy.display(), to = %dir.display(), "raft log moved to segment files");
    }
    std::fs::remove_file(legacy)?;
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

fn copy(legacy: &Path, staging: &Path) -> io::Result<()> {
    let db = super::open_database(legacy).map_err(io::Error::other)?;
    let txn = db.begin_read().map_err(io::Error::other)?;
    let mut segments = Segments::open(staging)?;
    let meta = match txn.open_table(META) {
        Ok(table) => Some(table),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(error) => return Err(io::Error::other(error)),
    };
    let get = |key: &str| -> io::Result<Option<Vec<u8>>> {
        match &meta {
            Some(table) => {
                Ok(table.get(key).map_err(io::Error::other)?.map(|value| value.value().to_vec()))
            }
            None => Ok(None),
        }
    };
    let (vote, committed, purged) = (get("vote")?, get("committed")?, get("last_purged")?);
    let mut changes = Vec::new();
    if let Some(vote) = &vote {
        changes.push(Change::Vote(vote));
    }
    if let Some(committed) = &committed {
        changes.push(Change::Committed(committed));
    }
    if let Some(purged) = &purged {
        let id: LogId<NodeId> = serde_json::from_slice(purged).map_err(io::Error::other)?;
        changes.push(Change::Purge(id.index, purged));
    }
    segments.write(&changes)?;
    let logs = match txn.open_table(LOGS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(error) => return Err(io::Error::other(error)),
    };
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
    for item in logs.iter().map_err(io::Error::other)? {
        let (index, value) = item.map_err(io::Error::other)?;
        batch.push((index.value(), value.value().to_vec()));
        if batch.len() == BATCH {
            write_entries(&mut segments, &batch)?;
            batch.clear();
        }
    }
    write_entries(&mut segments, &batch)
}

fn write_entries(segments: &mut Segments, batch: &[(u64, Vec<u8>)]) -> io::Result<()> {
    let changes: Vec<Change<'_>> =
        batch.iter().map(|(index, bytes)| Change::Entry(*index, bytes)).collect();
    segments.write(&changes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

    use std::ops::Bound;

    use openraft::{CommittedLeaderId, LogId, Vote};
    use redb::Database;

    use super::super::segments::{Segments, read_range};
    use super::{LOGS, META, import};

    fn id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn a_redb_log_moves_into_segments_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("raft-log.redb");
        let target = dir.path().join("raft-log");
        let vote = serde_json::to_vec(&Vote::new_committed(3, 2)).unwrap();
        let committed = serde_json::to_vec(&Some(id(3, 2400))).unwrap();
        let purged = serde_json::to_vec(&id(2, 9)).unwrap();
        {
            let db = Database::create(&legacy).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("vote", vote.as_slice()).unwrap();
                meta.insert("committed", committed.as_slice()).unwrap();
                meta.insert("last_purged", purged.as_slice()).unwrap();
                let mut logs = txn.open_table(LOGS).unwrap();
                for index in 10..=2500u64 {
                    logs.insert(index, format!("entry {index}").as_bytes()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        // A staging directory an interrupted import left is started over.
        std::fs::create_dir_all(dir.path().join("raft-log.import")).unwrap();
        std::fs::write(dir.path().join("raft-log.import/00000000000000000001.wal"), b"junk")
            .unwrap();

        import(&legacy, &target).unwrap();
        assert!(!legacy.exists(), "the redb file is removed once the segments hold the log");
        assert!(!dir.path().join("raft-log.import").exists());
        let segments = Segments::open(&target).unwrap();
        let entries = read_range(&segments.view(), (Bound::Unbounded, Bound::Unbounded)).unwrap();
        assert_eq!(entries.len(), 2491);
        assert_eq!(entries[0], (10, b"entry 10".to_vec()));
        assert_eq!(entries.last().unwrap(), &(2500, b"entry 2500".to_vec()));
        let view = segments.view();
        let view = view.read().unwrap();
        assert_eq!(view.vote(), Some(vote.as_slice()));
        assert_eq!(view.committed(), Some(committed.as_slice()));
        assert_eq!(view.purged(), Some(purged.as_slice()));
        drop(view);
        drop(segments);

        // A crash after the rename but before the file went: the file is removed, the segments
        // are kept as they are.
        std::fs::write(&legacy, b"left over").unwrap();
        import(&legacy, &target).unwrap();
        assert!(!legacy.exists());
        let segments = Segments::open(&target).unwrap();
        assert_eq!(segments.view().read().unwrap().last_index(), Some(2500));
    }
}
