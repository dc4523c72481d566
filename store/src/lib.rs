//! dsops-store: where secret values live, with versions and the labels `current`, `pending` and
//! `previous` that the rotation protocol moves (see `docs/rotation.md`) — the [`SecretStore`]
//! trait, the encrypted file store ([`FileStore`]), the sealed-file layout every agent file uses
//! ([`envelope`]) and [`SecretValue`], which never prints its value. No
//! async runtime, network or control-plane code: the agent and the CLI use it, and the fuzz
//! targets build it alone.
//!
//! Values are addressed as `store://<store>/<path>#<field>`; versions and labels belong to the
//! entry (`<path>`), so fields that belong together change together. Staging puts a new version
//! under `pending`; promoting moves `current` to `previous` and `pending` to `current`. Each
//! operation is idempotent for the same run id, so a retried step does the same thing again
//! rather than something new.

pub mod envelope;
mod file;
pub mod key_file;
pub mod secret;

use std::collections::BTreeMap;

use dsops_proto::domain::Fingerprint;

use crate::secret::SecretValue;

pub use file::{FileStore, FileStoreOptions, derive, load_or_create_key};

/// A label on a version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// What consumers read.
    Current,
    /// Staged by a run, not yet promoted.
    Pending,
    /// The value `current` had before the last promotion (what a rollback returns to).
    Previous,
}

impl Label {
    /// All labels, in display order.
    pub const ALL: [Label; 3] = [Label::Current, Label::Pending, Label::Previous];
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Label::Current => "current",
            Label::Pending => "pending",
            Label::Previous => "previous",
        })
    }
}

/// What a store says about one version, without its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// 1, 2, 3, ... per entry.
    pub version: u64,
    /// Keyed fingerprint of each field's value.
    pub fingerprints: BTreeMap<String, Fingerprint>,
    /// When it was written, ms since the epoch.
    pub created_at_ms: u64,
    /// The run that wrote it (empty for values put by an operator).
    pub run_id: String,
    /// Labels on it now.
    pub labels: Vec<Label>,
}

/// The fields of one version of an entry.
pub type Fields = BTreeMap<String, SecretValue>;

/// Why a store operation failed. Messages name the entry, never a value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing stored there (or not under that label).
    #[error("{entry}: no {label} value")]
    Missing {
        /// The entry.
        entry: String,
        /// The label looked for.
        label: Label,
    },
    /// A pending value of another run is in the way.
    #[error(
        "{entry}: a pending value of run {other_run} is staged; it must be promoted or discarded first"
    )]
    PendingConflict {
        /// The entry.
        entry: String,
        /// The run that staged it.
        other_run: String,
    },
    /// The store file cannot be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The store file or its key is not what it should be (wrong key, tampered, bad format).
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// A secret store. Implemented by the encrypted file store here and by remote stores later
/// (AWS Secrets Manager, Vault), which map entries and labels onto their own versioning.
///
/// An *entry* (`store://<store>/<path>`) holds named fields; a version is a whole set of fields,
/// so a username and its password change together. Every write makes a new version; labels
/// point at versions.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// The fields under `label`, if any.
    fn read(&self, entry: &str, label: Label) -> Result<Option<Fields>, StoreError>;

    /// Every labelled version with its fields, read at one instant (under one lock).
    fn read_labels(
        &self,
        entry: &str,
    ) -> Result<BTreeMap<Label, (VersionInfo, Fields)>, StoreError>;

    /// Versions of an entry, newest first, without values.
    fn versions(&self, entry: &str) -> Result<Vec<VersionInfo>, StoreError>;

    /// Sets one field of `current` directly (an operator's `dsops store put`): a new version
    /// with the other fields copied becomes current, the old current becomes previous. Refused
    /// while a run has a pending value.
    fn put(&self, entry: &str, field: &str, value: &SecretValue)
    -> Result<VersionInfo, StoreError>;

    /// Stages `fields` (over a copy of the current fields) as `pending` for `run_id`.
    /// Idempotent: if `run_id` already staged a version, that version is kept and returned (so a
    /// retry never replaces a value that a target may already hold), also after it was
    /// promoted. Refused if another run's pending version is there.
    fn stage(
        &self,
        entry: &str,
        run_id: &str,
        fields: &Fields,
    ) -> Result<(VersionInfo, Fields), StoreError>;

    /// Moves `pending` (staged by `run_id`) to `current`, and the old current to `previous`.
    /// Idempotent: if `run_id`'s version is already current, nothing changes.
    fn promote(&self, entry: &str, run_id: &str) -> Result<VersionInfo, StoreError>;

    /// Drops the `pending` label if `run_id` set it (rollback). Idempotent.
    fn discard(&self, entry: &str, run_id: &str) -> Result<(), StoreError>;

    /// Every entry with its versions (for `dsops store list`).
    fn list(&self) -> Result<BTreeMap<String, Vec<VersionInfo>>, StoreError>;
}
