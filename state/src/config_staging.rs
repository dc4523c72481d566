//! Configurations too large for one log entry (log format 2).
//!
//! An AppendEntries call must finish within one heartbeat, so no entry may be large: a
//! 100,000-secret configuration with its fingerprints is about 20 MB. The proposing node
//! splits the JSON of its [`ConfigPayload`] into parts of at most [`CONFIG_PART_BYTES`]
//! ([`split_payload`]), proposes each as a `stage_config_part` command, then a
//! `store_staged_config` command that joins them, checks their SHA-256 and stores the result as
//! a `store_config` would. One upload is staged at a time, by the operator who started it, and
//! at most [`MAX_STAGED_CONFIG_BYTES`]: a part 0 starts a new upload and drops an unfinished
//! one, so nothing staged outlives the next upload.

use std::collections::BTreeMap;

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config_apply::{ConfigInput, store_config};
use super::{ApplyContext, Outcome, Request, State};

/// The largest part of a staged configuration: 32 of them (openraft's most entries per
/// AppendEntries here) still cross a loopback or LAN link well within a heartbeat.
pub const CONFIG_PART_BYTES: usize = 256 << 10;
/// The most bytes staged at once: a whole apply ([`dsops_proto::domain::MAX_APPLY_BYTES`]) with
/// its fingerprints, as JSON.
pub const MAX_STAGED_CONFIG_BYTES: u64 = 64 << 20;

/// How long an upload holds the slot against another operator's (log time, from its part 0):
/// two operators applying at once get a clear refusal instead of cutting each other off, and an
/// upload its proposer abandoned does not block the next for long.
pub const STAGED_UPLOAD_HOLD_MS: u64 = 60_000;

/// What a `store_config` command carries, staged as JSON in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPayload {
    /// The dsops.yaml text.
    pub config_yaml: String,
    /// Its file name.
    pub config_path: String,
    /// Catalog documents by relative path.
    pub catalog_files: BTreeMap<String, String>,
    /// A content hash per item.
    pub fingerprints: BTreeMap<String, String>,
    /// Refuse unless the stored version is this one.
    pub expected_version: Option<u64>,
    /// The history's byte bound (see `Command::StoreConfig`).
    pub history_bytes: Option<u64>,
}

impl ConfigPayload {
    /// The payload of a `store_config` command; any other command back as it was.
    pub fn from_command(command: crate::Command) -> Result<ConfigPayload, Box<crate::Command>> {
        match command {
            crate::Command::StoreConfig {
                config_yaml,
                config_path,
                catalog_files,
                fingerprints,
                expected_version,
                history_bytes,
            } => Ok(ConfigPayload {
                config_yaml,
                config_path,
                catalog_files,
                fingerprints,
                expected_version,
                history_bytes,
            }),
            other => Err(Box::new(other)),
        }
    }

    /// What `store_config` stores, borrowed from it.
    pub(crate) fn input(&self) -> ConfigInput<'_> {
        ConfigInput {
            config_yaml: &self.config_yaml,
            config_path: &self.config_path,
            catalog_files: &self.catalog_files,
            fingerprints: &self.fingerprints,
            expected_version: self.expected_version,
            history_bytes: self.history_bytes,
        }
    }

    /// The `store_config` command that carries it whole.
    pub fn into_command(self) -> crate::Command {
        let ConfigPayload {
            config_yaml,
            config_path,
            catalog_files,
            fingerprints,
            expected_version,
            history_bytes,
        } = self;
        crate::Command::StoreConfig {
            config_yaml,
            config_path,
            catalog_files,
            fingerprints,
            expected_version,
            history_bytes,
        }
    }
}

/// An upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedConfig {
    /// The upload's id (the apply request's id).
    pub upload: String,
    /// Who started it; only they may add parts or store it.
    pub actor: String,
    /// The parts so far, in order.
    pub parts: Vec<String>,
    /// Their bytes.
    pub bytes: u64,
    /// When part 0 was applied, ms since the epoch.
    pub started_at_ms: u64,
}

/// The JSON of `payload` in parts of at most [`CONFIG_PART_BYTES`] (split on character
/// boundaries), and the SHA-256 (hex) of the whole. `None` when the whole is larger than
/// [`MAX_STAGED_CONFIG_BYTES`] (nothing is proposed then).
pub fn split_payload(payload: &ConfigPayload) -> Option<(Vec<String>, String)> {
    let text = serde_json::to_string(payload).expect("a payload of strings and maps serializes");
    if text.len() as u64 > MAX_STAGED_CONFIG_BYTES {
        return None;
    }
    let sha256 = dsops_proto::hex(&Sha256::digest(text.as_bytes()));
    let mut parts = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(CONFIG_PART_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part.to_owned());
        rest = tail;
    }
    Some((parts, sha256))
}

/// What the dedup table keeps of a response: a configuration stored by a format-2 command
/// without its change list (one line per changed item: megabytes at 100,000 secrets, kept a
/// day), which the stored version holds; whoever answers a retry reads it from there.
pub(super) fn for_dedup(request: &Request, response: &crate::Response) -> crate::Response {
    match &response.outcome {
        Outcome::ConfigStored { version, previous_version, changes }
            if request.command.log_format() >= 2 && !changes.is_empty() =>
        {
            crate::Response {
                outcome: Outcome::ConfigStored {
                    version: *version,
                    previous_version: *previous_version,
                    changes: Vec::new(),
                },
                ..response.clone()
            }
        }
        _ => response.clone(),
    }
}

/// Applies part `index` of `upload`.
pub(super) fn stage_part(
    state: &mut State,
    request: &Request,
    upload: &str,
    index: u32,
    text: &str,
) -> Outcome {
    if index == 0 {
        if let Some(other) = state.staged_config.as_ref() {
            let age = request.proposed_at_ms.saturating_sub(other.started_at_ms);
            if other.actor != request.actor && age < STAGED_UPLOAD_HOLD_MS {
                return Outcome::rejected(
                    ErrorCode::Conflict,
                    format!(
                        "{} is applying a configuration (started {} s ago); apply again when it is stored",
                        other.actor,
                        age / 1000
                    ),
                );
            }
        }
        state.staged_config = Some(StagedConfig {
            upload: upload.to_owned(),
            actor: request.actor.clone(),
            parts: Vec::new(),
            bytes: 0,
            started_at_ms: request.proposed_at_ms,
        });
    }
    let Some(staged) = state.staged_config.as_mut().filter(|s| s.upload == upload) else {
        return Outcome::rejected(
            ErrorCode::Conflict,
            format!(
                "configuration upload {upload} is not in progress (another upload replaced it); apply again"
            ),
        );
    };
    if staged.actor != request.actor {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("configuration upload {upload} was started by {}", staged.actor),
        );
    }
    if index as usize != staged.parts.len() {
        return Outcome::rejected(
            ErrorCode::Conflict,
            format!(
                "configuration upload {upload}: part {index} arrived, part {} was expected",
                staged.parts.len()
            ),
        );
    }
    let bytes = staged.bytes + text.len() as u64;
    if bytes > MAX_STAGED_CONFIG_BYTES {
        state.staged_config = None;
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("configuration upload {upload} is larger than {MAX_STAGED_CONFIG_BYTES} bytes"),
        );
    }
    staged.parts.push(text.to_owned());
    staged.bytes = bytes;
    Outcome::ConfigPartStaged { part: index, bytes }
}

/// Joins the `parts` parts of `upload`, checks them against `sha256` and stores the
/// configuration they hold, as `store_config` does. The staged parts are dropped whatever the
/// outcome.
pub(super) fn store_staged(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    upload: &str,
    parts: u32,
    sha256: &str,
) -> Outcome {
    let staged = match state.staged_config.take() {
        Some(staged) if staged.upload == upload && staged.actor == request.actor => staged,
        other => {
            state.staged_config = other;
            return Outcome::rejected(
                ErrorCode::Conflict,
                format!("configuration upload {upload} is not in progress; apply again"),
            );
        }
    };
    if staged.parts.len() != parts as usize {
        return Outcome::rejected(
            ErrorCode::Conflict,
            format!(
                "configuration upload {upload} has {} of its {parts} parts; apply again",
                staged.parts.len()
            ),
        );
    }
    let text = staged.parts.concat();
    if dsops_proto::hex(&Sha256::digest(text.as_bytes())) != sha256 {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("configuration upload {upload}: the parts do not match their hash"),
        );
    }
    let payload: ConfigPayload = match serde_json::from_str(&text) {
        Ok(payload) => payload,
        Err(e) => {
            return Outcome::rejected(
                ErrorCode::InvalidArgument,
                format!("configuration upload {upload} is not a configuration: {e}"),
            );
        }
    };
    store_config(state, request, ctx, payload.input())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply;

    fn request(id: &str, actor: &str, command: crate::Command) -> Request {
        Request { request_id: id.into(), actor: actor.into(), proposed_at_ms: 1_000, command }
    }

    fn payload(yaml_bytes: usize) -> ConfigPayload {
        // Multi-byte characters, so parts must be cut on character boundaries.
        let mut config_yaml = String::from("version: 1\n# ");
        while config_yaml.len() < yaml_bytes {
            config_yaml.push_str("é€ ");
        }
        ConfigPayload {
            config_yaml,
            config_path: "dsops.yaml".into(),
            catalog_files: BTreeMap::from([("c/a.yaml".to_owned(), "kind: x".to_owned())]),
            fingerprints: BTreeMap::from([("envs.a.K".to_owned(), "ab".repeat(32))]),
            expected_version: None,
            history_bytes: Some(crate::CONFIG_HISTORY_BYTES),
        }
    }

    /// Applies the parts of `payload` as `actor`, then the store; the store's outcome.
    fn upload(state: &mut State, upload: &str, actor: &str, payload: &ConfigPayload) -> Outcome {
        let (parts, sha256) = split_payload(payload).unwrap();
        let count = parts.len() as u32;
        for (index, text) in parts.into_iter().enumerate() {
            let command = crate::Command::StageConfigPart {
                upload: upload.into(),
                index: index as u32,
                text,
            };
            let id = format!("{upload}/part-{index}");
            let outcome = apply(state, &request(&id, actor, command), ApplyContext { index: 1 });
            assert!(matches!(outcome.outcome, Outcome::ConfigPartStaged { .. }), "{outcome:?}");
        }
        let command =
            crate::Command::StoreStagedConfig { upload: upload.into(), parts: count, sha256 };
        apply(state, &request(upload, actor, command), ApplyContext { index: 2 }).outcome
    }

    #[test]
    fn a_payload_over_the_staging_bound_is_not_split() {
        let mut payload = payload(16);
        payload.config_yaml = "x".repeat(MAX_STAGED_CONFIG_BYTES as usize);
        assert!(split_payload(&payload).is_none());
    }

    #[test]
    fn parts_are_cut_on_character_boundaries_and_join_to_the_payload() {
        let payload = payload(3 * CONFIG_PART_BYTES + 17);
        let (parts, sha256) = split_payload(&payload).unwrap();
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.len() <= CONFIG_PART_BYTES && !p.is_empty()));
        let joined = parts.concat();
        assert_eq!(dsops_proto::hex(&Sha256::digest(joined.as_bytes())), sha256);
        assert_eq!(serde_json::from_str::<ConfigPayload>(&joined).unwrap(), payload);
    }

    #[test]
    fn a_staged_upload_stores_what_one_store_config_stores() {
        let payload = payload(2 * CONFIG_PART_BYTES);
        let mut staged = State::default();
        let outcome = upload(&mut staged, "apply-1", "alice", &payload);
        assert!(matches!(outcome, Outcome::ConfigStored { version: 1, .. }), "{outcome:?}");
        assert!(staged.staged_config.is_none(), "the parts are dropped once stored");

        let mut direct = State::default();
        let command = payload.clone().into_command();
        apply(&mut direct, &request("apply-1", "alice", command), ApplyContext { index: 2 });
        assert_eq!(staged.configs, direct.configs);
    }

    #[test]
    fn out_of_order_foreign_oversized_or_damaged_uploads_are_refused() {
        // Every request its own id: a repeated id is answered from the dedup table.
        let next = std::cell::Cell::new(0u32);
        let id = || {
            next.set(next.get() + 1);
            format!("request-{}", next.get())
        };
        let stage = |state: &mut State, upload: &str, actor: &str, index: u32, text: &str| {
            let command =
                crate::Command::StageConfigPart { upload: upload.into(), index, text: text.into() };
            apply(state, &request(&id(), actor, command), ApplyContext { index: 1 }).outcome
        };
        let rejected = |outcome: &Outcome, what: &str| match outcome {
            Outcome::Rejected { message, .. } => assert!(message.contains(what), "{message}"),
            other => panic!("expected a refusal naming {what:?}, got {other:?}"),
        };
        let mut state = State::default();
        // A part of an upload that never started.
        rejected(&stage(&mut state, "u1", "alice", 1, "x"), "not in progress");
        assert!(matches!(
            stage(&mut state, "u1", "alice", 0, "{"),
            Outcome::ConfigPartStaged { .. }
        ));
        // Out of order, and another operator's part.
        rejected(&stage(&mut state, "u1", "alice", 2, "x"), "part 1 was expected");
        rejected(&stage(&mut state, "u1", "mallory", 1, "x"), "started by alice");
        // Another operator cannot cut an upload off while it is young; its own next upload,
        // or anyone's once it is older than STAGED_UPLOAD_HOLD_MS, replaces it.
        rejected(&stage(&mut state, "u2", "bob", 0, "{"), "alice is applying a configuration");
        assert!(matches!(
            stage(&mut state, "u0", "alice", 0, "{"),
            Outcome::ConfigPartStaged { .. }
        ));
        rejected(&stage(&mut state, "u1", "alice", 1, "x"), "another upload replaced it");
        let later = request(
            &id(),
            "bob",
            crate::Command::StageConfigPart { upload: "u2".into(), index: 0, text: "{".into() },
        );
        let later = Request { proposed_at_ms: 1_000 + STAGED_UPLOAD_HOLD_MS, ..later };
        let outcome = apply(&mut state, &later, ApplyContext { index: 1 }).outcome;
        assert!(matches!(outcome, Outcome::ConfigPartStaged { .. }), "{outcome:?}");
        rejected(&stage(&mut state, "u0", "alice", 1, "x"), "another upload replaced it");
        // Storing with a wrong hash or count, or as someone else, stores nothing.
        let store = |state: &mut State, actor: &str, parts: u32, sha256: &str| {
            let command = crate::Command::StoreStagedConfig {
                upload: "u2".into(),
                parts,
                sha256: sha256.into(),
            };
            apply(state, &request(&id(), actor, command), ApplyContext { index: 3 }).outcome
        };
        rejected(&store(&mut state, "mallory", 1, "00"), "not in progress");
        assert!(state.staged_config.is_some(), "a foreign store leaves the upload alone");
        rejected(&store(&mut state, "bob", 1, "00"), "do not match their hash");
        assert!(state.configs.is_empty() && state.staged_config.is_none());
        assert!(matches!(stage(&mut state, "u2", "bob", 0, "{"), Outcome::ConfigPartStaged { .. }));
        rejected(&store(&mut state, "bob", 2, "00"), "has 1 of its 2 parts");
        // Not a configuration, though the hash matches.
        let text = "{\"x\":1}";
        assert!(matches!(
            stage(&mut state, "u2", "bob", 0, text),
            Outcome::ConfigPartStaged { .. }
        ));
        let sha256 = dsops_proto::hex(&Sha256::digest(text.as_bytes()));
        rejected(&store(&mut state, "bob", 1, &sha256), "is not a configuration");
        assert!(state.configs.is_empty());
        // Past the byte bound: refused, and the upload dropped.
        let big = "x".repeat(CONFIG_PART_BYTES);
        assert!(matches!(
            stage(&mut state, "u3", "bob", 0, &big),
            Outcome::ConfigPartStaged { .. }
        ));
        let mut index = 1;
        let outcome = loop {
            let outcome = stage(&mut state, "u3", "bob", index, &big);
            if !matches!(outcome, Outcome::ConfigPartStaged { .. }) {
                break outcome;
            }
            index += 1;
        };
        rejected(&outcome, "larger than");
        assert_eq!(u64::from(index) * CONFIG_PART_BYTES as u64, MAX_STAGED_CONFIG_BYTES);
        assert!(state.staged_config.is_none());
    }
}
