//! The raft log in redb.
//!
//! One table holds entries by index, another the metadata (vote, committed index, last purged
//! id). Writes go to a single writer thread that takes every operation queued at that moment,
//! applies them in order in **one** write transaction, commits it durably, and only then tells
//! openraft (through each append's `LogFlushed` callback) that the entries are on disk.
//!
//! openraft 0.9 waits for each append to be flushed before it issues the next one, so appends
//! rarely share a transaction; what batches requests is the proposer in `node::api`, which puts
//! every request that arrived meanwhile into one entry. The writer still folds votes, purges
//! and the committed index into the transaction of the next append.
//!
//! The newest entries are kept in memory ([`LogCache`]): those appended but not yet committed,
//! so readers see the log openraft believes it has, and the most recent durable ones, so
//! replication and the state machine read what was just appended without a disk read or a
//! decode. Votes, truncations and purges go through the same writer, in order, and
//! their callers wait for them to be durable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use dsops_state::log_format::{LOG_FORMAT, LOG_MAGIC, LogFormatError, unframe};

use super::log_cache::LogCache;
use super::{NodeId, TypeConfig, storage_error};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// Why a stored log entry cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// No marker, or a format newer than this release.
    #[error(transparent)]
    Format(#[from] LogFormatError),
    /// The body does not decode.
    #[error("log entry body is corrupt: {0}")]
    Body(#[from] serde_json::Error),
}

/// How the log stores an entry: the log marker and format ([`dsops_state::log_format`]), then
/// the entry as JSON.
pub fn encode_entry(entry: &Entry<TypeConfig>) -> std::result::Result<Vec<u8>, serde_json::Error> {
    let mut bytes = LOG_MAGIC.to_vec();
    bytes.push(LOG_FORMAT);
    serde_json::to_writer(&mut bytes, entry)?;
    Ok(bytes)
}

/// Reads a stored entry of any format this release understands (formats 0 and 1 share the body).
pub fn decode_entry(bytes: &[u8]) -> std::result::Result<Entry<TypeConfig>, EntryError> {
    let (_format, body) = unframe(bytes)?;
    Ok(serde_json::from_slice(body)?)
}

fn write_err<E: std::error::Error + 'static>(error: E) -> StorageError<NodeId> {
    storage_error(StorageIOError::write_logs, error)
}

fn read_err<E: std::error::Error + 'static>(error: E) -> StorageError<NodeId> {
    storage_error(StorageIOError::read_logs, error)
}

/// One operation for the writer thread.
enum Op {
    /// Entries (index, id, encoded) and the callback to fire once they are durable.
    Append(Vec<(u64, LogId<NodeId>, Vec<u8>)>, LogFlushed<TypeConfig>),
    /// A metadata key and value, and who waits for it.
    Meta(&'static str, Vec<u8>, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
    /// Delete entries from this index on.
    Truncate(u64, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
    /// Delete entries up to this index, recording the purged id.
    Purge(u64, Vec<u8>, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
}

/// The durable raft log. Cheap to clone (shared database, writer and cache).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Op>,
    /// The newest entries: those the writer has not committed yet, and recent durable ones.
    cache: Arc<Mutex<LogCache>>,
    /// The latest committed log id (encoded), written along with the writer's next batch.
    committed: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> std::result::Result<LogStore, redb::DatabaseError> {
        let db = Arc::new(super::open_database(path)?);
        let cache: Arc<Mutex<LogCache>> = Arc::default();
        let committed: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let (writer, queue) = mpsc::channel();
        let thread_db = db.clone();
        let thread_cache = cache.clone();
        let thread_committed = committed.clone();
        std::thread::Builder::new()
            .name("dsops-raft-log".into())
            .spawn(move || write_loop(&thread_db, &thread_cache, &thread_committed, &queue))
            .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
        Ok(LogStore { db, writer, cache, committed })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = match txn.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(read_err(error)),
        };
        match table.get(key).map_err(read_err)? {
            Some(value) => serde_json::from_slice(value.value()).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    async fn submit(
        &self,
        op: impl FnOnce(tokio::sync::oneshot::Sender<std::result::Result<(), String>>) -> Op,
    ) -> Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer
            .send(op(done))
            .map_err(|_| write_err(std::io::Error::other("the log writer has stopped")))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(write_err(std::io::Error::other(message))),
            Err(_) => Err(write_err(std::io::Error::other("the log writer has stopped"))),
        }
    }

    fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<TypeConfig>>> {
        // The cache first: it holds a contiguous tail of the log, and an entry leaves it only
        // after it is on disk, so whatever is missing from this copy is found on disk.
        let (cached, complete) = self.cache.lock().expect("log cache lock").range(range);
        if complete {
            return Ok(cached.into_iter().map(|(_, entry)| entry).collect());
        }
        let mut entries: BTreeMap<u64, Entry<TypeConfig>> = BTreeMap::new();
        let txn = self.db.begin_read().map_err(read_err)?;
        match txn.open_table(LOGS) {
            Ok(table) => {
                for item in table.range::<u64>(range).map_err(read_err)? {
                    let (index, value) = item.map_err(read_err)?;
                    entries.insert(index.value(), decode_entry(value.value()).map_err(read_err)?);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(error) => return Err(read_err(error)),
        }
        // Cached entries win: a pending one is newer than anything on disk.
        entries.extend(cached);
        Ok(entries.into_values().collect())
    }
}

/// The writer thread: batches every queued operation into one durable transaction.
fn write_loop(
    db: &Database,
    cache: &Mutex<LogCache>,
    committed: &Mutex<Option<Vec<u8>>>,
    queue: &mpsc::Receiver<Op>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let committed = committed.lock().expect("committed lock").take();
        let result = commit(db, &batch, committed.as_deref()).map_err(|e| e.to_string());
        let mut appended = Vec::new();
        for op in batch {
            match op {
                Op::Append(entries, callback) => {
                    appended.extend(entries.iter().map(|(index, id, _)| (*index, *id)));
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Op::Meta(_, _, done) | Op::Truncate(_, done) | Op::Purge(_, _, done) => {
                    let _ = done.send(result.clone());
                }
            }
        }
        if result.is_ok() {
            let mut cache = cache.lock().expect("log cache lock");
            // Only the very entry that was written: a truncated-and-rewritten index (a new
            // entry with another log id) stays pending until its own batch commits.
            for (index, id) in appended {
                cache.written(index, id);
            }
        }
    }
}

fn commit(
    db: &Database,
    batch: &[Op],
    committed: Option<&[u8]>,
) -> std::result::Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut logs = txn.open_table(LOGS)?;
        let mut meta = txn.open_table(META)?;
        if let Some(committed) = committed {
            meta.insert(COMMITTED, committed)?;
        }
        for op in batch {
            match op {
                Op::Append(entries, _) => {
                    for (index, _, bytes) in entries {
                        logs.insert(index, bytes.as_slice())?;
                    }
                }
                Op::Meta(key, value, _) => {
                    meta.insert(*key, value.as_slice())?;
                }
                Op::Truncate(since, _) => {
                    logs.retain_in(*since.., |_, _| false)?;
                }
                Op::Purge(upto, purged, _) => {
                    meta.insert(LAST_PURGED, purged.as_slice())?;
                    logs.retain_in(..=*upto, |_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        // Read in place: replication reads recent entries, which come from the in-memory cache
        // or from pages redb has cached; a hop to the blocking pool would cost more than that.
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_range(range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let cached = self.cache.lock().expect("log cache lock").last_log_id();
        let txn = self.db.begin_read().map_err(read_err)?;
        let stored = match txn.open_table(LOGS) {
            Ok(table) => match table.last().map_err(read_err)? {
                Some((_, value)) => {
                    let entry = decode_entry(value.value()).map_err(read_err)?;
                    Some(entry.log_id)
                }
                None => None,
            },
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(read_err(error)),
        };
        let last = cached.max(stored).or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        self.submit(|done| Op::Meta(VOTE, bytes, done)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        // Not a write of its own: the value rides along with the writer's next batch. After a
        // crash the leader re-establishes the commit index; the saved value only lets a
        // restarting node re-apply its log before it hears from a leader.
        let bytes = serde_json::to_vec(&committed).map_err(write_err)?;
        *self.committed.lock().expect("committed lock") = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        {
            let mut cache = self.cache.lock().expect("log cache lock");
            for entry in entries {
                let bytes = encode_entry(&entry).map_err(write_err)?;
                let size = bytes.len();
                encoded.push((entry.log_id.index, entry.log_id, bytes));
                cache.insert(entry, size);
            }
        }
        self.writer
            .send(Op::Append(encoded, callback))
            .map_err(|_| write_err(std::io::Error::other("the log writer has stopped")))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.cache.lock().expect("log cache lock").truncate(log_id.index);
        self.submit(|done| Op::Truncate(log_id.index, done)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let bytes = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.cache.lock().expect("log cache lock").purge(log_id.index);
        self.submit(|done| Op::Purge(log_id.index, bytes, done)).await
    }
}
