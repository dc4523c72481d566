//! The encrypted local file store: the embedded default's store.
//!
//! Each entry's versions and labels are JSON sealed with AES-256-GCM, in files named by a hash of
//! the entry's address. The key is a separate file (32 random bytes, hex, mode 0600), never
//! inside the store directory's files. An entry has two slot files written in turn, in place, so
//! a crash tears at most the one being written and the other still holds the newest acknowledged
//! version ([`file_slots`](self::slots)). A lock file per entry serialises writers across
//! processes (the agent and `dsops store put` may run at once); readers share it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use dsops_proto::domain::Fingerprint;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::{Fingerprinter, SecretValue, random_bytes};
use crate::{Fields, Label, SecretStore, StoreError, VersionInfo};

#[path = "file_slots.rs"]
mod slots;

/// Unlabelled versions kept per entry besides the labelled ones.
const KEEP_UNLABELLED: usize = 5;

/// Where a file store keeps its entries and key.
#[derive(Debug, Clone)]
pub struct FileStoreOptions {
    /// The directory of entry files.
    pub dir: PathBuf,
    /// The key file; created (0600) if missing.
    pub key_file: PathBuf,
}

/// The encrypted file store.
pub struct FileStore {
    name: String,
    dir: PathBuf,
    key: LessSafeKey,
    fingerprinter: Fingerprinter,
    /// Which of the 256 shard directories are known to exist.
    shards: Box<[AtomicBool; 256]>,
    /// Entries (slot A's path) whose last in-place write failed, and the slot it went into: not
    /// read, and written again first (see the slots module).
    unsure: Mutex<HashMap<PathBuf, slots::Slot>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("name", &self.name).field("dir", &self.dir).finish()
    }
}

#[derive(Serialize, Deserialize)]
struct StoredVersion {
    version: u64,
    fields: BTreeMap<String, String>,
    fingerprints: BTreeMap<String, String>,
    created_at_ms: u64,
    run_id: String,
}

impl Drop for StoredVersion {
    fn drop(&mut self) {
        for value in self.fields.values_mut() {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct StoredEntry {
    path: String,
    next_version: u64,
    versions: Vec<StoredVersion>,
    labels: BTreeMap<Label, u64>,
}

impl StoredEntry {
    fn labelled(&self, label: Label) -> Option<&StoredVersion> {
        let version = *self.labels.get(&label)?;
        self.versions.iter().find(|v| v.version == version)
    }

    fn values(version: &StoredVersion) -> Fields {
        version.fields.iter().map(|(k, v)| (k.clone(), SecretValue::new(v.clone()))).collect()
    }
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: path.display().to_string(), message: error.to_string() }
}

fn corrupt(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Corrupt { path: path.display().to_string(), message: message.into() }
}

/// Opens `path` for writing from the start (created 0600 if missing, emptied if not).
fn open_private(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// Reads the key file, creating it with a fresh random key (mode 0600) if it does not exist.
pub fn load_or_create_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(|e| io_error(path, e))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(corrupt(
                    path,
                    format!(
                        "key file is readable by others (mode {:o}); chmod 600 it",
                        mode & 0o777
                    ),
                ));
            }
            let bytes = Zeroizing::new(dsops_proto::hex_decode(&text).unwrap_or_default());
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| corrupt(path, "not a key file (expected 64 hex digits)"))?;
            Ok(Zeroizing::new(key))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = Zeroizing::new(
                random_bytes::<32>().map_err(|_| io_error(path, "random source failed"))?,
            );
            let text = Zeroizing::new(dsops_proto::hex(key.as_slice()));
            if crate::key_file::create_once(path, text.as_bytes()).map_err(|e| io_error(path, e))? {
                Ok(key)
            } else {
                // Another process created it meanwhile: use theirs.
                load_or_create_key(path)
            }
        }
        Err(error) => Err(io_error(path, error)),
    }
}

/// Derives a sub-key for one purpose from the store key.
pub fn derive(key: &[u8; 32], purpose: &str) -> Zeroizing<[u8; 32]> {
    let tag =
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), purpose.as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    out
}

impl FileStore {
    /// Opens (creating if needed) the store `name`.
    pub fn open(name: &str, options: &FileStoreOptions) -> Result<FileStore, StoreError> {
        fs::create_dir_all(&options.dir).map_err(|e| io_error(&options.dir, e))?;
        fs::set_permissions(&options.dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error(&options.dir, e))?;
        let master = load_or_create_key(&options.key_file)?;
        let sealing = derive(&master, "dsops file store: sealing");
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, sealing.as_slice())
                .map_err(|_| corrupt(&options.key_file, "bad key"))?,
        );
        let fingerprinter = Fingerprinter::new(&derive(&master, "dsops file store: fingerprints"));
        Ok(FileStore {
            name: name.to_owned(),
            dir: options.dir.clone(),
            key,
            fingerprinter,
            shards: Box::new(std::array::from_fn(|_| AtomicBool::new(false))),
            unsure: Mutex::default(),
        })
    }

    /// The entry's file name, and the subdirectory (of 256) it lives in: spreading files over
    /// directories keeps each directory small and lets writers of different entries proceed
    /// without contending for one directory.
    fn file_name(entry: &str) -> (String, String) {
        let digest = dsops_proto::hex(&Sha256::digest(entry.as_bytes())[..16]);
        (digest[..2].to_owned(), format!("{digest}.entry"))
    }

    /// The subdirectory `shard`, created (0700, parent synced) if missing.
    fn shard_dir(&self, shard: &str) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join(shard);
        // Shard directories are never removed: one found once needs no `stat` again.
        let known = usize::from_str_radix(shard, 16).ok().and_then(|i| self.shards.get(i));
        if known.is_some_and(|k| k.load(Ordering::Relaxed)) {
            return Ok(dir);
        }
        if !dir.is_dir() {
            match fs::create_dir(&dir) {
                Ok(()) => {
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| io_error(&dir, e))?;
                    slots::sync_dir(&self.dir)?;
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io_error(&dir, error)),
            }
        }
        if let Some(known) = known {
            known.store(true, Ordering::Relaxed);
        }
        Ok(dir)
    }

    fn label(&self, entry: &str) -> String {
        format!("store://{}/{entry}", self.name)
    }

    /// Puts `data` where `entry`'s file lives (sealed with this store's key first when `seal`,
    /// so the parsing behind the envelope is reached) and reads it back through [`read_labels`],
    /// as a reader meeting that file would. The fuzz target of the sealed reader
    /// (`fuzz/fuzz_targets/sealed_store.rs`); not for anything else.
    ///
    /// [`read_labels`]: SecretStore::read_labels
    #[doc(hidden)]
    pub fn read_planted(
        &self,
        entry: &str,
        data: &[u8],
        seal: bool,
    ) -> Result<BTreeMap<Label, (VersionInfo, Fields)>, StoreError> {
        let (shard, name) = Self::file_name(entry);
        let dir = self.shard_dir(&shard)?;
        slots::plant(&self.key, &slots::EntryFiles { dir: &dir, name: &name }, data, seal)?;
        self.read_labels(entry)
    }

    /// Runs `f` on the entry under its lock (exclusive to write); writes it back if `f` says so.
    /// The lock is a file of its own, not a slot: releases before the slots lock the same file.
    fn with_entry<T>(
        &self,
        entry: &str,
        write: bool,
        f: impl FnOnce(&mut StoredEntry) -> Result<(T, bool), StoreError>,
    ) -> Result<T, StoreError> {
        let (shard, name) = Self::file_name(entry);
        let dir = self.shard_dir(&shard)?;
        let files = slots::EntryFiles { dir: &dir, name: &name };
        let (lock, stored, next) = self.open_entry(&files, write)?;
        let mut stored = match stored {
            Some(stored) => stored,
            None => {
                StoredEntry { path: entry.to_owned(), next_version: 1, ..StoredEntry::default() }
            }
        };
        if stored.path != entry {
            return Err(corrupt(&dir.join(&name), "holds another entry than its name says"));
        }
        let (result, changed) = f(&mut stored)?;
        if changed {
            let mut plain = Zeroizing::new(
                serde_json::to_vec(&stored)
                    .map_err(|e| io_error(&dir.join(&name), format!("encoding: {e}")))?,
            );
            let in_place = next.in_place();
            let saved = slots::save(&self.key, &files, next, &mut plain);
            if let Some(slot) = in_place {
                let mut unsure = self.unsure.lock().expect("unsure slots lock");
                match &saved {
                    Ok(()) if unsure.is_empty() => None,
                    Ok(()) => unsure.remove(&files.path_a()),
                    Err(_) => unsure.insert(files.path_a(), slot),
                };
            }
            saved?;
        }
        drop(lock);
        Ok(result)
    }

    /// Takes the entry's lock (exclusive to write, shared to read) and reads it: the held lock,
    /// the entry if it has a version, and where its next write goes.
    fn open_entry(
        &self,
        files: &slots::EntryFiles<'_>,
        write: bool,
    ) -> Result<(File, Option<StoredEntry>, slots::Next), StoreError> {
        let lock = Self::lock(files, write)?;
        let unsure = {
            // Almost always empty: then no path is built for the lookup.
            let unsure = self.unsure.lock().expect("unsure slots lock");
            if unsure.is_empty() { None } else { unsure.get(&files.path_a()).copied() }
        };
        let loaded = slots::load(&self.key, files, write, unsure)?;
        let stored =
            match &loaded.plain {
                Some(plain) => Some(serde_json::from_slice(plain).map_err(|e| {
                    corrupt(&files.dir.join(files.name), format!("bad contents: {e}"))
                })?),
                None => None,
            };
        Ok((lock, stored, loaded.next))
    }

    fn lock(files: &slots::EntryFiles<'_>, write: bool) -> Result<File, StoreError> {
        let lock_path = files.dir.join(format!("{}.lock", files.name));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        if write { lock.lock() } else { lock.lock_shared() }
            .map_err(|e| io_error(&lock_path, e))?;
        Ok(lock)
    }

    fn info(stored: &StoredEntry, version: &StoredVersion) -> Result<VersionInfo, StoreError> {
        let mut fingerprints = BTreeMap::new();
        for (field, hex) in &version.fingerprints {
            let bytes = dsops_proto::hex_decode(hex).unwrap_or_default();
            let fingerprint = Fingerprint::from_wire(&bytes, field).map_err(|e| {
                StoreError::Corrupt { path: stored.path.clone(), message: e.to_string() }
            })?;
            fingerprints.insert(field.clone(), fingerprint);
        }
        Ok(VersionInfo {
            version: version.version,
            fingerprints,
            created_at_ms: version.created_at_ms,
            run_id: version.run_id.clone(),
            labels: stored
                .labels
                .iter()
                .filter(|(_, v)| **v == version.version)
                .map(|(l, _)| *l)
                .collect(),
        })
    }

    /// Adds a version: the current fields with `changes` laid over them.
    fn add_version(&self, stored: &mut StoredEntry, changes: &Fields, run_id: &str) -> u64 {
        let mut fields: BTreeMap<String, String> =
            stored.labelled(Label::Current).map(|v| v.fields.clone()).unwrap_or_default();
        for (field, value) in changes {
            fields.insert(field.clone(), value.expose().to_owned());
        }
        let fingerprints = fields
            .iter()
            .map(|(field, value)| {
                let value = SecretValue::new(value.clone());
                (field.clone(), self.fingerprinter.fingerprint(&value).to_string())
            })
            .collect();
        let version = stored.next_version.max(1);
        stored.next_version = version + 1;
        stored.versions.push(StoredVersion {
            version,
            fields,
            fingerprints,
            created_at_ms: dsops_proto::now_ms(),
            run_id: run_id.to_owned(),
        });
        version
    }

    /// Drops old unlabelled versions beyond the retention.
    fn prune(stored: &mut StoredEntry) {
        let labelled: Vec<u64> = stored.labels.values().copied().collect();
        let mut unlabelled = 0;
        let mut keep = Vec::new();
        for version in stored.versions.drain(..).rev() {
            let is_labelled = labelled.contains(&version.version);
            if is_labelled || unlabelled < KEEP_UNLABELLED {
                unlabelled += usize::from(!is_labelled);
                keep.push(version);
            }
        }
        keep.reverse();
        stored.versions = keep;
    }

    fn version_info(stored: &StoredEntry, version: u64) -> Result<VersionInfo, StoreError> {
        let found = stored
            .versions
            .iter()
            .find(|v| v.version == version)
            .expect("labelled versions are kept");
        Self::info(stored, found)
    }

    fn conflict(&self, entry: &str, pending: &StoredVersion) -> StoreError {
        StoreError::PendingConflict { entry: self.label(entry), other_run: pending.run_id.clone() }
    }

    /// The store's fingerprinter (the same keyed fingerprints as [`VersionInfo`] carries).
    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }
}

impl SecretStore for FileStore {
    fn read(&self, entry: &str, label: Label) -> Result<Option<Fields>, StoreError> {
        self.with_entry(entry, false, |stored| {
            Ok((stored.labelled(label).map(StoredEntry::values), false))
        })
    }

    fn read_labels(
        &self,
        entry: &str,
    ) -> Result<BTreeMap<Label, (VersionInfo, Fields)>, StoreError> {
        self.with_entry(entry, false, |stored| {
            let mut labels = BTreeMap::new();
            for label in Label::ALL {
                if let Some(version) = stored.labelled(label) {
                    labels.insert(
                        label,
                        (Self::info(stored, version)?, StoredEntry::values(version)),
                    );
                }
            }
            Ok((labels, false))
        })
    }

    fn versions(&self, entry: &str) -> Result<Vec<VersionInfo>, StoreError> {
        self.with_entry(entry, false, |stored| {
            let infos = stored
                .versions
                .iter()
                .rev()
                .map(|v| Self::info(stored, v))
                .collect::<Result<_, _>>()?;
            Ok((infos, false))
        })
    }

    fn put(
        &self,
        entry: &str,
        field: &str,
        value: &SecretValue,
    ) -> Result<VersionInfo, StoreError> {
        self.with_entry(entry, true, |stored| {
            if let Some(pending) = stored.labelled(Label::Pending) {
                return Err(self.conflict(entry, pending));
            }
            let changes = Fields::from([(field.to_owned(), value.clone())]);
            let version = self.add_version(stored, &changes, "");
            if let Some(old) = stored.labels.insert(Label::Current, version) {
                stored.labels.insert(Label::Previous, old);
            }
            Self::prune(stored);
            Ok((Self::version_info(stored, version)?, true))
        })
    }

    fn stage(
        &self,
        entry: &str,
        run_id: &str,
        fields: &Fields,
    ) -> Result<(VersionInfo, Fields), StoreError> {
        self.with_entry(entry, true, |stored| {
            if let Some(pending) = stored.labelled(Label::Pending) {
                if pending.run_id != run_id {
                    return Err(self.conflict(entry, pending));
                }
                return Ok(((Self::info(stored, pending)?, StoredEntry::values(pending)), false));
            }
            // Staged earlier by this run and already promoted: staging again changes nothing.
            if let Some(current) = stored.labelled(Label::Current)
                && current.run_id == run_id
                && !run_id.is_empty()
            {
                return Ok(((Self::info(stored, current)?, StoredEntry::values(current)), false));
            }
            let version = self.add_version(stored, fields, run_id);
            stored.labels.insert(Label::Pending, version);
            Self::prune(stored);
            let staged =
                stored.labelled(Label::Pending).map(StoredEntry::values).unwrap_or_default();
            Ok(((Self::version_info(stored, version)?, staged), true))
        })
    }

    fn promote(&self, entry: &str, run_id: &str) -> Result<VersionInfo, StoreError> {
        self.with_entry(entry, true, |stored| {
            let pending = match stored.labelled(Label::Pending) {
                Some(pending) if pending.run_id == run_id => pending.version,
                Some(pending) => return Err(self.conflict(entry, pending)),
                None => {
                    return match stored.labelled(Label::Current) {
                        Some(current) if current.run_id == run_id => {
                            Ok((Self::info(stored, current)?, false))
                        }
                        _ => Err(StoreError::Missing {
                            entry: self.label(entry),
                            label: Label::Pending,
                        }),
                    };
                }
            };
            stored.labels.remove(&Label::Pending);
            if let Some(old) = stored.labels.insert(Label::Current, pending) {
                stored.labels.insert(Label::Previous, old);
            }
            Self::prune(stored);
            Ok((Self::version_info(stored, pending)?, true))
        })
    }

    fn discard(&self, entry: &str, run_id: &str) -> Result<(), StoreError> {
        self.with_entry(entry, true, |stored| {
            let mine =
                stored.labelled(Label::Pending).is_some_and(|pending| pending.run_id == run_id);
            if mine {
                stored.labels.remove(&Label::Pending);
            }
            Ok(((), mine))
        })
    }

    fn list(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>, StoreError> {
        let mut out = BTreeMap::new();
        let shards = fs::read_dir(&self.dir).map_err(|e| io_error(&self.dir, e))?;
        for shard in shards {
            let shard = shard.map_err(|e| io_error(&self.dir, e))?.path();
            if !shard.is_dir() {
                continue;
            }
            let mut names = std::collections::BTreeSet::new();
            for file in fs::read_dir(&shard).map_err(|e| io_error(&shard, e))? {
                let file = file.map_err(|e| io_error(&shard, e))?;
                if let Some(name) = slots::entry_of(&file.file_name().to_string_lossy()) {
                    names.insert(name.to_owned());
                }
            }
            for name in names {
                let files = slots::EntryFiles { dir: &shard, name: &name };
                if let (_lock, Some(stored), _) = self.open_entry(&files, false)? {
                    let infos = stored
                        .versions
                        .iter()
                        .rev()
                        .map(|v| Self::info(&stored, v))
                        .collect::<Result<_, _>>()?;
                    out.insert(stored.path.clone(), infos);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
