//! How one entry of the file store lies on disk: two slot files, written in turn.
//!
//! Slot A is `<hash>.entry`, slot B `<hash>.entry.b`. Each holds a header — magic `DSOPSIT2`, a
//! generation (u64) and the length of what follows (u32), little-endian — then the entry sealed
//! with the slot's file name and the generation as associated data, then zeros up to a multiple
//! of 4 KiB. A write seals the entry with the next generation into the slot that does not hold
//! the newest one, in place, and `fdatasync`s it: one write and one flush of blocks the file
//! already has, where a rename needs the file and then the directory flushed. A crash tears at
//! most the slot being written, which then does not open; the other still holds the newest
//! acknowledged version, and the next write goes into the torn slot again. An entry's first
//! write, which has no other slot to fall back on, is a rename (see [`Next::Slot`]).
//!
//! A reader opens the slot with the higher generation; if it does not open, the other one, with
//! a warning naming the failed slot (after a crash, the write it interrupted was never
//! acknowledged). Neither opening is an error naming slot A.
//!
//! Entries of the previous layout (one file `<hash>.entry` sealed whole with magic `DSOPSIT1`,
//! replaced by rename) are read as they are; their first write rewrites the file as slot A by
//! rename, so a crash leaves the old or the new file. Releases before the slots read a converted
//! or new entry as "not a dsops store file" rather than as missing.
//!
//! A write into a slot that fails (an `fdatasync` that reports EIO, a full disk) leaves that slot
//! uncertain: the page cache may show the new generation while the disk holds something else. The
//! store then reads the entry from the other slot, the newest it knows to be durable, and writes
//! into the uncertain slot again until a write there succeeds ([`load`]'s `unsure`); it never
//! overwrites the durable copy on the strength of an unacknowledged one. Only the process that saw
//! the error knows: another process sharing the store may read the uncertain slot.
//!
//! Shared storage: a reader must see another host's in-place write once it holds the entry's
//! lock — a local filesystem, or NFSv4 (close-to-open consistency by change attribute); not
//! NFSv3, whose cached attributes may hide a write made within the same timestamp tick.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ring::aead::LessSafeKey;
use zeroize::Zeroizing;

use super::{corrupt, io_error, open_private};
use crate::StoreError;
use crate::envelope::{self, Unsealed};

/// The magic of the previous layout's entry files.
const LEGACY_MAGIC: &[u8; 8] = b"DSOPSIT1";
/// The magic of a slot file (its header and its sealed part).
const MAGIC: &[u8; 8] = b"DSOPSIT2";
/// Magic, generation, length.
const HEADER: usize = 8 + 8 + 4;
/// Slot files grow in steps of this, so most writes overwrite blocks the file already has.
const BLOCK: usize = 4096;
/// Larger slot files are refused before they are read (an entry holds a few versions).
const MAX_SLOT: u64 = 64 << 20;

/// One of an entry's two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    A,
    B,
}

impl Slot {
    fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// The files of one entry: `name` is slot A's file name in directory `dir`.
pub(super) struct EntryFiles<'a> {
    pub dir: &'a Path,
    pub name: &'a str,
}

impl EntryFiles<'_> {
    fn file_name(&self, slot: Slot) -> String {
        match slot {
            Slot::A => self.name.to_owned(),
            Slot::B => format!("{}.b", self.name),
        }
    }

    fn path(&self, slot: Slot) -> PathBuf {
        self.dir.join(self.file_name(slot))
    }

    /// Slot A's path: the entry's name on disk.
    pub(super) fn path_a(&self) -> PathBuf {
        self.path(Slot::A)
    }

    /// The associated data a slot's contents are sealed with.
    fn aad(&self, slot: Slot, generation: u64) -> Vec<u8> {
        let mut aad = self.file_name(slot).into_bytes();
        aad.push(0);
        aad.extend_from_slice(&generation.to_le_bytes());
        aad
    }
}

/// Where the next write of an entry goes.
pub(super) enum Next {
    /// Into `slot` with `generation`; `file` is the slot's file, open for writing, if it exists.
    /// `first`: the entry has no version yet — slot A is written whole beside it and renamed into
    /// place (so it is complete or absent: a torn first write cannot leave a slot that never
    /// opens and no other), slot B is created empty, and the directory is synced before the
    /// write is acknowledged, so a later write into an existing slot never needs the directory
    /// synced (a crash before that sync leaves no entry, and the next write is a first write
    /// again). A slot file missing later (removed by hand) is created and its directory synced.
    Slot { slot: Slot, generation: u64, file: Option<File>, first: bool },
    /// The entry is in the previous layout: rewritten whole as slot A (generation 1).
    Convert,
}

/// An entry as read: its sealed contents opened (None: no such entry), and where a write goes.
pub(super) struct Loaded {
    pub plain: Option<Zeroizing<Vec<u8>>>,
    pub next: Next,
}

/// A slot file's bytes and, when open for writing, the file.
struct Read1 {
    bytes: Zeroizing<Vec<u8>>,
    file: Option<File>,
}

fn read_slot(path: &Path, write: bool) -> Result<Option<Read1>, StoreError> {
    let mut file = match OpenOptions::new().read(true).write(write).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path, error)),
    };
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    if len > MAX_SLOT {
        return Err(corrupt(path, format!("{len} bytes: larger than any entry ({MAX_SLOT})")));
    }
    // Exactly its length: no second read to find the end (writers are kept out by the lock).
    let mut bytes = Zeroizing::new(vec![0; len as usize]);
    file.read_exact(&mut bytes).map_err(|e| io_error(path, e))?;
    Ok(Some(Read1 { bytes, file: write.then_some(file) }))
}

/// Why a slot file is not a slot: the generation its header claims, if it has one, and why.
type NotASlot = (Option<u64>, &'static str);

/// A slot's header: its generation and the range of its sealed part. None: the slot is empty
/// (no bytes, or a header of zeros: a first write a crash cut short). Err: why it is not a
/// slot, with the generation its header claims if it has one.
fn header(bytes: &[u8]) -> Result<Option<(u64, Range<usize>)>, NotASlot> {
    let head = &bytes[..bytes.len().min(HEADER)];
    if head.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err((None, "not a dsops store file"));
    }
    let generation = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    if len > bytes.len() - HEADER {
        return Err((Some(generation), "shorter than its header says (a write was cut short)"));
    }
    Ok(Some((generation, HEADER..HEADER + len)))
}

fn unsealed_message(error: Unsealed) -> &'static str {
    match error {
        Unsealed::NotOurs => "not a dsops store file",
        Unsealed::Altered => "cannot decrypt: wrong key file, or the file was altered",
    }
}

/// Reads the entry: the newest slot that opens, or the previous layout's file. `unsure` is a
/// slot whose last write in this process failed: it is not read, and the next write goes into it.
pub(super) fn load(
    key: &LessSafeKey,
    files: &EntryFiles<'_>,
    write: bool,
    unsure: Option<Slot>,
) -> Result<Loaded, StoreError> {
    let mut a = read_slot(&files.path(Slot::A), write)?;
    if let Some(read) = a.as_mut()
        && read.bytes.starts_with(LEGACY_MAGIC)
    {
        let path = files.path(Slot::A);
        let plain = envelope::open(key, LEGACY_MAGIC, files.name.as_bytes(), &mut read.bytes)
            .map_err(|e| corrupt(&path, unsealed_message(e)))?;
        let plain = Zeroizing::new(plain.to_vec());
        return Ok(Loaded { plain: Some(plain), next: Next::Convert });
    }
    let mut b = read_slot(&files.path(Slot::B), write)?;
    // The slots with a header, newest first; the failures of the others.
    let mut candidates = Vec::new();
    let mut failures: Vec<(Slot, Option<u64>, &'static str)> = Vec::new();
    for (slot, read) in [(Slot::A, &a), (Slot::B, &b)] {
        let Some(read) = read else { continue };
        if unsure == Some(slot) {
            continue;
        }
        match header(&read.bytes) {
            Ok(Some((generation, range))) => candidates.push((slot, generation, range)),
            Ok(None) => {}
            Err((generation, why)) => failures.push((slot, generation, why)),
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1));
    for (slot, generation, range) in candidates {
        let read = match slot {
            Slot::A => a.as_mut(),
            Slot::B => b.as_mut(),
        }
        .expect("a candidate was read");
        let aad = files.aad(slot, generation);
        match envelope::open(key, MAGIC, &aad, &mut read.bytes[range]) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain.to_vec());
                // A slot that claims an older generation hides nothing newer. One that claims the
                // next is most likely a write a crash cut short (never acknowledged) — or damage
                // to the newest version: reported either way, as is any other.
                for (failed, claimed, why) in &failures {
                    if claimed.is_none_or(|claimed| claimed > generation) {
                        tracing::warn!(
                            file = %files.path(*failed).display(),
                            generation,
                            "a slot of this store entry does not open ({why}); using generation {generation} from {}, the entry's newest that opens (after a crash: the write it interrupted was never acknowledged)",
                            files.file_name(slot)
                        );
                    }
                }
                let target = slot.other();
                let read = match target {
                    Slot::A => a,
                    Slot::B => b,
                };
                let file = read.and_then(|r| r.file);
                let generation = generation.saturating_add(1);
                let next = Next::Slot { slot: target, generation, file, first: false };
                return Ok(Loaded { plain: Some(plain), next });
            }
            Err(error) => failures.push((slot, Some(generation), unsealed_message(error))),
        }
    }
    if let Some((slot, _, why)) =
        failures.iter().min_by_key(|(slot, _, _)| *slot == Slot::B).copied()
    {
        return Err(corrupt(&files.path(slot), why));
    }
    if let Some(slot) = unsure {
        // The failed write was into the only slot left: nothing is known to be durable.
        return Err(io_error(
            &files.path(slot.other()),
            format!(
                "an earlier write of {} failed and this slot holds no version; check the disk and restart the agent",
                files.file_name(slot)
            ),
        ));
    }
    // No entry yet (or only empty slots): the first write goes into slot A.
    let file = a.and_then(|r| r.file);
    Ok(Loaded { plain: None, next: Next::Slot { slot: Slot::A, generation: 1, file, first: true } })
}

/// Opens (creating it 0600 if missing) slot file `path` for writing.
fn open_slot(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// A slot file's bytes: the header, `plain` sealed, zeros up to the next block.
fn slot_bytes(
    key: &LessSafeKey,
    files: &EntryFiles<'_>,
    slot: Slot,
    generation: u64,
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<Vec<u8>, StoreError> {
    let path = files.path(slot);
    let sealed = envelope::seal(key, MAGIC, &files.aad(slot, generation), plain)
        .map_err(|e| io_error(&path, e))?;
    let len = u32::try_from(sealed.len()).map_err(|_| io_error(&path, "entry too large"))?;
    let mut bytes = Vec::with_capacity((HEADER + sealed.len()).next_multiple_of(BLOCK));
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&sealed);
    bytes.resize(bytes.len().next_multiple_of(BLOCK), 0);
    if bytes.len() as u64 > MAX_SLOT {
        return Err(io_error(
            &path,
            format!(
                "the entry would take {} bytes; a store entry takes at most {MAX_SLOT}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Syncs directory `dir` (a file created or renamed in it is then durable).
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

impl Next {
    /// The slot this write goes into in place (an existing entry's), if it does.
    pub(super) fn in_place(&self) -> Option<Slot> {
        match self {
            Next::Slot { slot, first: false, .. } => Some(*slot),
            _ => None,
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: the next in-place write on this thread reaches the file and then fails, as an
    /// `fdatasync` reporting EIO would leave it.
    pub(super) static FAIL_NEXT_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Writes `plain` where `next` says; returns once it is durable.
pub(super) fn save(
    key: &LessSafeKey,
    files: &EntryFiles<'_>,
    next: Next,
    plain: &mut Zeroizing<Vec<u8>>,
) -> Result<(), StoreError> {
    match next {
        Next::Slot { slot, generation, first: true, .. } => {
            let bytes = slot_bytes(key, files, slot, generation, plain)?;
            open_slot(&files.path(slot.other()))?;
            replace(files, slot, &bytes)
        }
        Next::Slot { slot, generation, file, first: false } => {
            let path = files.path(slot);
            let bytes = slot_bytes(key, files, slot, generation, plain)?;
            let created = file.is_none();
            let file = match file {
                Some(file) => file,
                None => open_slot(&path)?,
            };
            file.write_all_at(&bytes, 0).map_err(|e| io_error(&path, e))?;
            #[cfg(test)]
            if FAIL_NEXT_SYNC.with(|fail| fail.replace(false)) {
                return Err(io_error(&path, "Input/output error (os error 5), injected"));
            }
            file.sync_data().map_err(|e| io_error(&path, e))?;
            if created {
                sync_dir(files.dir)?;
            }
            Ok(())
        }
        Next::Convert => {
            // A slot B beside a file of the previous layout is a leftover (of a restore from
            // backup, say): it must not outrank the converted entry, so it is emptied — and
            // synced, before the conversion can be acknowledged — for the next write.
            let b = files.path(Slot::B);
            open_private(&b)?.sync_all().map_err(|e| io_error(&b, e))?;
            let bytes = slot_bytes(key, files, Slot::A, 1, plain)?;
            replace(files, Slot::A, &bytes)?;
            // The previous layout's aside copy, if a crash left one.
            let _ = fs::remove_file(files.dir.join(format!("{}.old", files.name)));
            Ok(())
        }
    }
}

/// Writes `slot` whole beside it, syncs it, renames it into place and syncs the directory: the
/// slot is then the new one or the old one, never a torn one.
fn replace(files: &EntryFiles<'_>, slot: Slot, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = files.dir.join(format!("{}.tmp", files.file_name(slot)));
    let mut file = open_private(&temp)?;
    file.write_all(bytes).map_err(|e| io_error(&temp, e))?;
    file.sync_all().map_err(|e| io_error(&temp, e))?;
    drop(file);
    let path = files.path(slot);
    fs::rename(&temp, &path).map_err(|e| io_error(&path, e))?;
    sync_dir(files.dir)
}

/// Puts `data` in slot A as it is, or sealed as generation 1 when `seal`, and removes slot B:
/// for [`FileStore::read_planted`](super::FileStore::read_planted).
pub(super) fn plant(
    key: &LessSafeKey,
    files: &EntryFiles<'_>,
    data: &[u8],
    seal: bool,
) -> Result<(), StoreError> {
    let path = files.path(Slot::A);
    let bytes = if seal {
        slot_bytes(key, files, Slot::A, 1, &mut Zeroizing::new(data.to_vec()))?
    } else {
        data.to_vec()
    };
    let _ = fs::remove_file(files.path(Slot::B));
    fs::write(&path, bytes).map_err(|e| io_error(&path, e))
}

/// Whether `file_name` is a slot file; its entry's (slot A's) name if so.
pub(super) fn entry_of(file_name: &str) -> Option<&str> {
    let entry = file_name.strip_suffix(".b").unwrap_or(file_name);
    entry.ends_with(".entry").then_some(entry)
}
