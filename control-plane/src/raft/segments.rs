//! The raft log on disk: append-only segment files (ADR 0004).
//!
//! A node's log directory holds segments named by the sequence number of their first record
//! (`00000000000000000001.wal`, …). A segment is created at its full size and written with zeros,
//! so appending to it later changes no file metadata and one `fdatasync` makes a batch durable.
//! Every record is
//!
//! ```text
//! length u32 LE | CRC-32 u32 LE (of the rest) | sequence u64 LE | kind u8 | body
//! ```
//!
//! with bodies: an entry (index u64 LE, then the stored entry bytes), the vote, the committed
//! log id, a truncation (first index removed), or a purge (last index removed, then its log id).
//! Sequence numbers run on without a gap across segments; a zero header ends a segment.
//!
//! Recovery reads every segment in order. A record that fails its checksum or breaks the
//! sequence ends the newest segment (a write torn by a crash: the rest of that segment is
//! written with zeros again before anything new is appended), and is an error anywhere else.
//! Each new segment starts with the vote, the committed id and the purge point as they were, so
//! once the log is purged past every entry of the oldest segments, those are deleted whole.
//!
//! Only the writer thread changes the log ([`Segments`]); readers look entries up through the
//! shared [`View`] and read them with positioned reads, so they never wait for a sync.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::ops::Bound;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Size of a new segment.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Record header: length, checksum, sequence number.
const HEADER: usize = 16;
/// Largest record body read back: a corrupt length must not allocate gigabytes.
const MAX_BODY: usize = 1 << 30;

const ENTRY: u8 = 1;
const VOTE: u8 = 2;
const COMMITTED: u8 = 3;
const TRUNCATE: u8 = 4;
const PURGE: u8 = 5;

/// One change to the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// An entry at this index (the stored bytes: marker, format, body).
    Entry(u64, &'a [u8]),
    /// The vote (encoded).
    Vote(&'a [u8]),
    /// The committed log id (encoded).
    Committed(&'a [u8]),
    /// Removes the entries from this index on.
    Truncate(u64),
    /// Removes the entries up to this index, whose log id (encoded) becomes the purge point.
    Purge(u64, &'a [u8]),
}

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
struct Location {
    segment: u64,
    offset: u64,
    len: usize,
}

/// What readers share with the writer: where each live entry is, and the metadata.
#[derive(Default)]
pub(crate) struct View {
    files: BTreeMap<u64, Arc<File>>,
    entries: BTreeMap<u64, Location>,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
}

impl View {
    /// The stored vote.
    pub(crate) fn vote(&self) -> Option<&[u8]> {
        self.vote.as_deref()
    }

    /// The stored committed log id.
    pub(crate) fn committed(&self) -> Option<&[u8]> {
        self.committed.as_deref()
    }

    /// The log id of the last purged entry.
    pub(crate) fn purged(&self) -> Option<&[u8]> {
        self.purged.as_ref().map(|(_, id)| id.as_slice())
    }

    /// The index of the last entry, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.entries.last_key_value().map(|(index, _)| *index)
    }

    fn apply(&mut self, change: &Change<'_>, location: Option<Location>) {
        match *change {
            Change::Entry(index, _) => {
                if let Some(location) = location {
                    self.entries.insert(index, location);
                }
            }
            Change::Vote(vote) => self.vote = Some(vote.to_vec()),
            Change::Committed(committed) => self.committed = Some(committed.to_vec()),
            Change::Truncate(since) => drop(self.entries.split_off(&since)),
            Change::Purge(upto, id) => {
                self.entries = match upto.checked_add(1) {
                    Some(first_kept) => self.entries.split_off(&first_kept),
                    None => BTreeMap::new(),
                };
                self.purged = Some((upto, id.to_vec()));
            }
        }
    }
}

/// Reads the stored bytes of the entries in `range` (index order), without holding the view's
/// lock while reading.
pub(crate) fn read_range(
    view: &RwLock<View>,
    range: (Bound<u64>, Bound<u64>),
) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let located: Vec<(u64, Location, Arc<File>)> = {
        let view = view.read().expect("log view lock");
        let mut located = Vec::new();
        for (index, location) in view.entries.range(range) {
            let file = view.files.get(&location.segment).ok_or_else(|| {
                corrupt(format!("entry {index} is in segment {} which is gone", location.segment))
            })?;
            located.push((*index, *location, file.clone()));
        }
        located
    };
    let mut entries = Vec::with_capacity(located.len());
    for (index, location, file) in located {
        let mut record = vec![0; location.len];
        file.read_exact_at(&mut record, location.offset)?;
        let (_, kind, body) = parse(&record).ok_or_else(|| {
            corrupt(format!(
                "segment {} is corrupt at offset {} (entry {index})",
                segment_name(location.segment),
                location.offset
            ))
        })?;
        match (kind, body.split_first_chunk::<8>()) {
            (ENTRY, Some((stored, bytes))) if u64::from_le_bytes(*stored) == index => {
                entries.push((index, bytes.to_vec()));
            }
            _ => return Err(corrupt(format!("the record of entry {index} holds something else"))),
        }
    }
    Ok(entries)
}

fn corrupt(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("raft log: {message}"))
}

fn segment_name(id: u64) -> String {
    format!("{id:020}.wal")
}

/// Splits a whole record into its sequence number, kind and body, checking length and checksum.
fn parse(record: &[u8]) -> Option<(u64, u8, &[u8])> {
    let (header, rest) = record.split_first_chunk::<HEADER>()?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 || rest.len() != len {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(rest);
    if hasher.finalize() != crc {
        return None;
    }
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let (kind, body) = rest.split_first()?;
    Some((seq, *kind, body))
}

/// Appends one record for `change` to `buf`.
fn encode(buf: &mut Vec<u8>, seq: u64, change: &Change<'_>) -> io::Result<()> {
    let len = encoded_len(change) - HEADER;
    if len > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a raft log record of {len} bytes is larger than {MAX_BODY}"),
        ));
    }
    let start = buf.len();
    buf.extend_from_slice(&[0; 8]);
    buf.extend_from_slice(&seq.to_le_bytes());
    match *change {
        Change::Entry(index, bytes) => {
            buf.push(ENTRY);
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        Change::Vote(vote) => {
            buf.push(VOTE);
            buf.extend_from_slice(vote);
        }
        Change::Committed(committed) => {
            buf.push(COMMITTED);
            buf.extend_from_slice(committed);
        }
        Change::Truncate(since) => {
            buf.push(TRUNCATE);
            buf.extend_from_slice(&since.to_le_bytes());
        }
        Change::Purge(upto, id) => {
            buf.push(PURGE);
            buf.extend_from_slice(&upto.to_le_bytes());
            buf.extend_from_slice(id);
        }
    }
    debug_assert_eq!(len, buf.len() - start - HEADER);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Turns a record back into the change it stands for.
fn decode(kind: u8, body: &[u8]) -> Option<Change<'_>> {
    let index = |bytes: &[u8]| bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b));
    Some(match kind {
        ENTRY => Change::Entry(index(body)?, &body[8..]),
        VOTE => Change::Vote(body),
        COMMITTED => Change::Committed(body),
        TRUNCATE if body.len() == 8 => Change::Truncate(index(body)?),
        PURGE => Change::Purge(index(body)?, &body[8..]),
        _ => return None,
    })
}

/// The metadata every segment starts with.
#[derive(Default)]
struct Metadata {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
}

impl Metadata {
    fn changes(&self) -> Vec<Change<'_>> {
        let mut changes = Vec::new();
        if let Some(vote) = &self.vote {
            changes.push(Change::Vote(vote));
        }
        if let Some(committed) = &self.committed {
            changes.push(Change::Committed(committed));
        }
        if let Some((upto, id)) = &self.purged {
            changes.push(Change::Purge(*upto, id));
        }
        changes
    }
}

/// The segment being written.
struct Active {
    id: u64,
    file: Arc<File>,
    end: u64,
    capacity: u64,
}

/// The writer's side of the log. See the module documentation.
pub(crate) struct Segments {
    dir: PathBuf,
    _lock: File,
    active: Active,
    /// Size of a new segment ([`SEGMENT_BYTES`] but in tests).
    segment_bytes: u64,
    next_seq: u64,
    /// Per segment, the highest entry index recorded in it (`None`: metadata only).
    highest: BTreeMap<u64, Option<u64>>,
    view: Arc<RwLock<View>>,
    /// Why a write failed, if one did.
    failed: Option<String>,
}

impl Segments {
    /// Opens the log in `dir` (created if missing), recovering it as the module documentation
    /// describes. A directory another live process holds is waited for, up to ten seconds.
    pub(crate) fn open(dir: &Path) -> io::Result<Segments> {
        Segments::open_sized(dir, SEGMENT_BYTES)
    }

    /// [`Segments::open`], with new segments of `segment_bytes`.
    pub(crate) fn open_sized(dir: &Path, segment_bytes: u64) -> io::Result<Segments> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        let lock = lock(&dir.join("LOCK"))?;
        let mut ids = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".wal") {
                ids.push(id.parse::<u64>().map_err(|_| {
                    corrupt(format!("{} holds {name}, which is not a segment name", dir.display()))
                })?);
            }
        }
        ids.sort_unstable();
        if ids.first() == Some(&0) {
            return Err(corrupt(format!(
                "{} holds {}, but records count from 1",
                dir.display(),
                segment_name(0)
            )));
        }
        let mut view = View::default();
        let mut highest = BTreeMap::new();
        let mut next_seq = ids.first().copied().unwrap_or(1);
        let mut active = None;
        for (n, &id) in ids.iter().enumerate() {
            let path = dir.join(segment_name(id));
            if id != next_seq {
                return Err(corrupt(format!(
                    "{} starts at record {id}, but the log before it ends at {}",
                    path.display(),
                    next_seq - 1
                )));
            }
            let newest = n + 1 == ids.len();
            let file = OpenOptions::new().read(true).write(newest).open(&path)?;
            let bytes = std::fs::read(&path)?;
            let mut offset = 0usize;
            let mut top = None;
            while offset + HEADER <= bytes.len() {
                let len =
                    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap_or_default())
                        as usize;
                if len == 0 && bytes[offset..offset + HEADER].iter().all(|b| *b == 0) {
                    break;
                }
                let record = bytes.get(offset..offset + HEADER + len.min(MAX_BODY));
                let parsed = record.and_then(parse).filter(|(seq, _, _)| *seq == next_seq);
                let change = parsed.and_then(|(_, kind, body)| decode(kind, body));
                let Some(change) = change else {
                    if !newest {
                        return Err(corrupt(format!(
                            "{} is corrupt at offset {offset} (record {next_seq})",
                            path.display()
                        )));
                    }
                    break;
                };
                let location = Location { segment: id, offset: offset as u64, len: HEADER + len };
                if let Change::Entry(index, _) = change {
                    top = top.max(Some(index));
                }
                view.apply(&change, Some(location));
                next_seq = next_seq.checked_add(1).ok_or_else(|| {
                    corrupt(format!("{} numbers its records past the largest", path.display()))
                })?;
                offset += HEADER + len;
            }
            let file = Arc::new(file);
            view.files.insert(id, file.clone());
            highest.insert(id, top);
            if newest {
                let capacity = bytes.len() as u64;
                if bytes[offset..].iter().any(|b| *b != 0) {
                    // Whatever a crash left after the last whole record (a torn record, or the
                    // later pages of a batch whose first page never landed) goes, so that no
                    // part of it can ever be read as a record again.
                    file.write_all_at(&vec![0; bytes.len() - offset], offset as u64)?;
                    file.sync_data()?;
                }
                active = Some(Active { id, file, end: offset as u64, capacity });
            }
        }
        let active = match active {
            Some(active) => active,
            None => {
                let active = create_segment(dir, next_seq, segment_bytes)?;
                view.files.insert(active.id, active.file.clone());
                highest.insert(active.id, None);
                active
            }
        };
        Ok(Segments {
            dir: dir.to_owned(),
            _lock: lock,
            active,
            segment_bytes,
            next_seq,
            highest,
            view: Arc::new(RwLock::new(view)),
            failed: None,
        })
    }

    /// The readers' view of the log.
    pub(crate) fn view(&self) -> Arc<RwLock<View>> {
        self.view.clone()
    }

    /// Writes `changes` in order and makes them durable with one `fdatasync` (a new segment
    /// first when they do not fit in the current one), then deletes the segments a purge left
    /// without a live entry. A segment's first write starts with the vote, committed id and
    /// purge point as they stand, so that every segment repeats them. After a failed write the
    /// log takes no more: what reached the disk of it is unknown until the log is opened again.
    pub(crate) fn write(&mut self, changes: &[Change<'_>]) -> io::Result<()> {
        if let Some(failed) = &self.failed {
            return Err(io::Error::other(format!(
                "an earlier write to the raft log failed ({failed}); restart the node"
            )));
        }
        let result = self.write_now(changes);
        if let Err(error) = &result {
            self.failed = Some(error.to_string());
        }
        result
    }

    fn write_now(&mut self, changes: &[Change<'_>]) -> io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let metadata = if self.active.end == 0 { self.metadata() } else { Metadata::default() };
        let mut all = metadata.changes();
        all.extend_from_slice(changes);
        let mut buf = Vec::new();
        let mut starts = Vec::with_capacity(all.len());
        let mut seq = self.next_seq;
        for change in &all {
            starts.push(buf.len());
            encode(&mut buf, seq, change)?;
            seq += 1;
        }
        if self.active.end + buf.len() as u64 > self.active.capacity {
            let metadata = self.metadata();
            self.start_segment(&metadata.changes(), changes)?;
            return self.write_now(changes);
        }
        let base = self.active.end;
        self.active.file.write_all_at(&buf, base)?;
        self.active.file.sync_data()?;
        self.active.end += buf.len() as u64;
        self.next_seq = seq;
        let id = self.active.id;
        let mut purged = false;
        {
            let mut view = self.view.write().expect("log view lock");
            for (n, change) in all.iter().enumerate() {
                let end = starts.get(n + 1).copied().unwrap_or(buf.len());
                let location =
                    Location { segment: id, offset: base + starts[n] as u64, len: end - starts[n] };
                if let Change::Entry(index, _) = change {
                    let top = self.highest.entry(id).or_default();
                    *top = (*top).max(Some(*index));
                }
                purged |= matches!(change, Change::Purge(..));
                view.apply(change, Some(location));
            }
        }
        if purged {
            self.delete_purged_segments()?;
        }
        Ok(())
    }

    /// The vote, committed id and purge point as they stand.
    fn metadata(&self) -> Metadata {
        let view = self.view.read().expect("log view lock");
        Metadata {
            vote: view.vote.clone(),
            committed: view.committed.clone(),
            purged: view.purged.clone(),
        }
    }

    /// Makes a new segment the one being written, large enough for the metadata and `changes`.
    fn start_segment(&mut self, metadata: &[Change<'_>], changes: &[Change<'_>]) -> io::Result<()> {
        let needed: usize = metadata.iter().chain(changes).map(encoded_len).sum();
        let capacity = self.segment_bytes.max((needed as u64).div_ceil(4096) * 4096);
        if self.active.end == 0 {
            // The segment being written holds nothing yet (and is too small): it makes way for
            // one of the size needed, under the same name.
            std::fs::remove_file(self.dir.join(segment_name(self.active.id)))?;
            self.highest.remove(&self.active.id);
        }
        let active = create_segment(&self.dir, self.next_seq, capacity)?;
        self.view.write().expect("log view lock").files.insert(active.id, active.file.clone());
        self.highest.insert(active.id, None);
        self.active = active;
        Ok(())
    }

    /// Deletes, oldest first, the segments before the one being written whose entries are all
    /// purged (the newer segments repeat their metadata).
    fn delete_purged_segments(&mut self) -> io::Result<()> {
        let Some(upto) = self.view.read().expect("log view lock").purged.as_ref().map(|p| p.0)
        else {
            return Ok(());
        };
        let mut deleted = false;
        while let Some((&id, &top)) = self.highest.first_key_value() {
            if id == self.active.id || top.is_some_and(|top| top > upto) {
                break;
            }
            std::fs::remove_file(self.dir.join(segment_name(id)))?;
            self.highest.remove(&id);
            self.view.write().expect("log view lock").files.remove(&id);
            deleted = true;
        }
        if deleted {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn encoded_len(change: &Change<'_>) -> usize {
    HEADER
        + 1
        + match change {
            Change::Entry(_, bytes) | Change::Purge(_, bytes) => 8 + bytes.len(),
            Change::Vote(bytes) | Change::Committed(bytes) => bytes.len(),
            Change::Truncate(_) => 8,
        }
}

/// Creates segment `id` at its full size, written with zeros and synced with its directory.
fn create_segment(dir: &Path, id: u64, capacity: u64) -> io::Result<Active> {
    let path = dir.join(segment_name(id));
    let mut file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < capacity {
        let n = zeros.len().min((capacity - written) as usize);
        file.write_all(&zeros[..n])?;
        written += n as u64;
    }
    file.sync_all()?;
    File::open(dir)?.sync_all()?;
    Ok(Active { id, file: Arc::new(file), end: 0, capacity })
}

/// Takes a lock file, waiting up to ten seconds for a process that still holds it (a node
/// restarting while its previous instance shuts down).
pub(crate) fn lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock)
                if started.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is held by another process", path.display()),
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
    }
}

#[cfg(test)]
#[path = "segments_tests.rs"]
mod tests;
