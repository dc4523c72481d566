//! The raft log: openraft's side of the segment files ([`super::segments`], ADR 0004).
//!
//! Writes go to a single writer thread that takes every operation queued at that moment, writes
//! them in order as one batch made durable by one `fdatasync`, and only then tells openraft
//! (through each append's `LogFlushed` callback) that the entries are on disk.
//!
//! openraft 0.9 waits for each append to be flushed before it issues the next one, so appends
//! rarely share a batch; what batches requests is the proposer in `node::api`, which puts every
//! request that arrived meanwhile into one entry. The writer still folds votes, purges and the
//! committed index into the batch of the next append.
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
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};

use dsops_state::log_format::{LOG_MAGIC, LogFormatError, unframe};

use super::log_cache::LogCache;
use super::segments::{Change, Segments, View};
use super::{NodeId, TypeConfig, storage_error};

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

/// The most bytes (roughly) of entries one AppendEntries carries, unless one entry alone is
/// larger: 1 MiB crosses a LAN link well within a heartbeat.
pub const MAX_APPEND_BYTES: usize = 1 << 20;

/// How the log stores an entry: the log marker and format ([`dsops_state::log_format`]: the
/// oldest that carries its commands), then the entry as JSON.
pub fn encode_entry(entry: &Entry<TypeConfig>) -> std::result::Result<Vec<u8>, serde_json::Error> {
    let format = match &entry.payload {
        openraft::EntryPayload::Normal(proposal) => proposal.log_format(),
        _ => 1,
    };
    let mut bytes = LOG_MAGIC.to_vec();
    bytes.push(format);
    serde_json::to_writer(&mut bytes, entry)?;
    Ok(bytes)
}

/// Reads a stored entry of any format this release understands (formats 0, 1 and 2 share the
/// body).
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
    /// A vote, and who waits for it.
    Vote(Vec<u8>, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
    /// Delete entries from this index on.
    Truncate(u64, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
    /// Delete entries up to this index, recording the purged id.
    Purge(u64, Vec<u8>, tokio::sync::oneshot::Sender<std::result::Result<(), String>>),
}

/// The durable raft log. Cheap to clone (shared view, writer and cache).
#[derive(Clone)]
pub struct LogStore {
    view: Arc<RwLock<View>>,
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
    /// Opens (or creates) the log in directory `dir` and starts its writer thread. A log still
    /// in the redb file of earlier releases (`legacy`) is moved into `dir` first
    /// (see `raft/log_import.rs`).
    pub fn open(dir: &Path, legacy: Option<&Path>) -> std::io::Result<LogStore> {
        if let Some(legacy) = legacy {
            super::log_import::import(legacy, dir)?;
        }
        let segments = Segments::open(dir)?;
        let view = segments.view();
        let cache: Arc<Mutex<LogCache>> = Arc::default();
        let committed: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let (writer, queue) = mpsc::channel();
        let thread_cache = cache.clone();
        let thread_committed = committed.clone();
        std::thread::Builder::new()
            .name("dsops-raft-log".into())
            .spawn(move || write_loop(segments, &thread_cache, &thread_committed, &queue))?;
        Ok(LogStore { view, writer, cache, committed })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        pick: fn(&View) -> Option<&[u8]>,
    ) -> Result<Option<T>> {
        let view = self.view.read().expect("log view lock");
        match pick(&view) {
            Some(bytes) => serde_json::from_slice(bytes).map(Some).map_err(read_err),
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
        for (index, bytes) in super::segments::read_range(&self.view, range).map_err(read_err)? {
            entries.insert(index, decode_entry(&bytes).map_err(read_err)?);
        }
        // Cached entries win: a pending one is newer than anything on disk.
        entries.extend(cached);
        Ok(entries.into_values().collect())
    }
}

/// The writer thread: batches every queued operation into one durable write.
fn write_loop(
    mut segments: Segments,
    cache: &Mutex<LogCache>,
    committed: &Mutex<Option<Vec<u8>>>,
    queue: &mpsc::Receiver<Op>,
) {
    while let Ok(first) = queue.recv() {
        // The committed id is taken before the queue is drained, so the entries it covers were
        // queued before it was (openraft appends an entry before it can commit it) and are in
        // this batch or an earlier one; it is written last, so that after a crash a committed
        // id that survived (recovery keeps whole records from the start only) never names an
        // entry that did not.
        let committed = committed.lock().expect("committed lock").take();
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
        }
        let mut changes = Vec::new();
        for op in &batch {
            match op {
                Op::Append(entries, _) => {
                    changes.extend(
                        entries.iter().map(|(index, _, bytes)| Change::Entry(*index, bytes)),
                    );
                }
                Op::Vote(vote, _) => changes.push(Change::Vote(vote)),
                Op::Truncate(since, _) => changes.push(Change::Truncate(*since)),
                Op::Purge(upto, id, _) => changes.push(Change::Purge(*upto, id)),
            }
        }
        if let Some(committed) = &committed {
            changes.push(Change::Committed(committed));
        }
        let result = segments.write(&changes).map_err(|e| e.to_string());
        drop(changes);
        let mut appended = Vec::new();
        for op in batch {
            match op {
                Op::Append(entries, callback) => {
                    appended.extend(entries.iter().map(|(index, id, _)| (*index, *id)));
                    callback.log_io_completed(result.clone().map_err(std::io::Error::other));
                }
                Op::Vote(_, done) | Op::Truncate(_, done) | Op::Purge(_, _, done) => {
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

    /// What replication sends in one AppendEntries: the entries from `start`, as long as they
    /// stay under `MAX_APPEND_BYTES` (at least one). openraft 0.9 gives the whole call one
    /// heartbeat interval; a follower a few large entries behind would otherwise be sent the
    /// same too-large batch again and again and never catch up.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let mut entries = self.read_range((Bound::Included(start), Bound::Excluded(end)))?;
        let mut bytes = 0;
        let keep = entries
            .iter()
            .take_while(|entry| {
                bytes += match &entry.payload {
                    openraft::EntryPayload::Normal(proposal) => proposal.approx_bytes(),
                    _ => 256,
                };
                bytes <= MAX_APPEND_BYTES
            })
            .count();
        entries.truncate(keep.max(1));
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(View::purged)?;
        let cached = self.cache.lock().expect("log cache lock").last_log_id();
        let last_index = self.view.read().expect("log view lock").last_index();
        let stored = match last_index {
            Some(index) => self
                .read_range((Bound::Included(index), Bound::Included(index)))?
                .pop()
                .map(|e| e.log_id),
            None => None,
        };
        let last = cached.max(stored).or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let bytes = serde_json::to_vec(vote).map_err(write_err)?;
        self.submit(|done| Op::Vote(bytes, done)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.get_meta(View::vote)
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
        Ok(self.get_meta::<Option<LogId<NodeId>>>(View::committed)?.flatten())
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
