//! Signed checkpoints of the audit chain: the leader signs the chain head (sequence number,
//! hash, time) with the cluster's evidence key, at an interval and also when nothing happened,
//! and the log records each checkpoint as an audit event (`audit.checkpoint`) in the chain
//! itself. Anyone holding the cluster CA certificate can then check, offline, that a range of
//! events was the cluster's history: each link by hash, the head by the evidence key's
//! signature, the key by its certificate.
//!
//! ```text
//!   RegisterEvidenceKey { generation, public key, certificate }   (at the first checkpoint,
//!                                                                  and at each key rotation)
//!   Checkpoint { generation, seq, hash, at_ms, signature }  ──▶ audit.checkpoint event
//! ```
//!
//! Keys only go forward (a generation above every registered one); a checkpoint is signed by
//! the newest; older generations stay registered, so older checkpoints still verify.

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use super::{ApplyContext, Outcome, Request, State};

/// Evidence key generations kept (each a certificate of a few hundred bytes).
pub const MAX_EVIDENCE_KEYS: usize = 64;
/// The largest evidence certificate accepted, PEM.
pub const MAX_EVIDENCE_CERTIFICATE: usize = 8 * 1024;
/// The audit action of a checkpoint.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";

/// One generation of the cluster's evidence key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceKey {
    /// 1, 2, 3, ... (a rotation registers the next).
    pub generation: u32,
    /// The Ed25519 public key, hex.
    pub public_key_hex: String,
    /// Its certificate under the cluster CA, PEM.
    pub certificate_pem: String,
    /// When it was registered, log time.
    pub registered_at_ms: u64,
}

/// A signed statement that the audit chain's event `seq` has hash `hash` (and time `at_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// The evidence key generation that signed it.
    pub generation: u32,
    /// The event covered: its sequence number ...
    pub seq: u64,
    /// ... its hash ...
    pub hash: String,
    /// ... and its time, ms since the epoch.
    pub at_ms: u64,
    /// Ed25519 over [`SignedCheckpoint::message`], hex.
    pub signature_hex: String,
}

impl SignedCheckpoint {
    /// The bytes the evidence key signs.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "dsops audit checkpoint v1\n{}\n{}\n{}\n{}\n",
            self.generation, self.seq, self.hash, self.at_ms
        )
        .into_bytes()
    }

    /// The checkpoint as its audit event's detail (one line, `name=value` pairs).
    pub fn to_detail(&self) -> String {
        format!(
            "generation={} seq={} hash={} at_ms={} signature={}",
            self.generation, self.seq, self.hash, self.at_ms, self.signature_hex
        )
    }

    /// Reads a checkpoint back from its audit event's detail.
    pub fn from_detail(detail: &str) -> Option<SignedCheckpoint> {
        let mut fields = std::collections::HashMap::new();
        for pair in detail.split(' ') {
            let (name, value) = pair.split_once('=')?;
            fields.insert(name, value);
        }
        Some(SignedCheckpoint {
            generation: fields.get("generation")?.parse().ok()?,
            seq: fields.get("seq")?.parse().ok()?,
            hash: (*fields.get("hash")?).to_owned(),
            at_ms: fields.get("at_ms")?.parse().ok()?,
            signature_hex: (*fields.get("signature")?).to_owned(),
        })
    }

    /// Whether `public_key_hex` signed it.
    pub fn verify(&self, public_key_hex: &str) -> Result<(), String> {
        let key: [u8; 32] = dsops_proto::hex_decode(public_key_hex)
            .and_then(|k| k.try_into().ok())
            .ok_or("the evidence public key is not 32 bytes of hex")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| "the evidence public key is not an Ed25519 key")?;
        let signature: [u8; 64] = dsops_proto::hex_decode(&self.signature_hex)
            .and_then(|s| s.try_into().ok())
            .ok_or("the checkpoint signature is not 64 bytes of hex")?;
        key.verify_strict(&self.message(), &ed25519_dalek::Signature::from_bytes(&signature))
            .map_err(|_| {
                format!(
                    "the checkpoint of event {} does not verify with evidence key generation {}",
                    self.seq, self.generation
                )
            })
    }
}

/// Registers the next evidence key generation (idempotent for the same key).
pub(super) fn register_key(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    key: &EvidenceKey,
) -> Outcome {
    let now = request.proposed_at_ms;
    if let Some(existing) = state.evidence_keys.get(&key.generation) {
        return if existing.public_key_hex == key.public_key_hex {
            Outcome::Audited { seq: state.audit.head().seq }
        } else {
            Outcome::rejected(
                ErrorCode::AlreadyExists,
                format!("evidence key generation {} holds another key", key.generation),
            )
        };
    }
    let newest = state.evidence_keys.keys().next_back().copied().unwrap_or(0);
    if key.generation <= newest {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("evidence key generation {} is not after {newest}", key.generation),
        );
    }
    if state.evidence_keys.len() >= MAX_EVIDENCE_KEYS {
        return Outcome::rejected(
            ErrorCode::ResourceExhausted,
            format!("{MAX_EVIDENCE_KEYS} evidence key generations are registered already"),
        );
    }
    let valid_key = dsops_proto::hex_decode(&key.public_key_hex)
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .is_some_and(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).is_ok());
    if !valid_key {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "the evidence public key is not an Ed25519 key in hex",
        );
    }
    if key.certificate_pem.len() > MAX_EVIDENCE_CERTIFICATE
        || !key.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----")
    {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!(
                "the evidence certificate is not one PEM certificate of at most {MAX_EVIDENCE_CERTIFICATE} bytes"
            ),
        );
    }
    let mut stored = key.clone();
    stored.registered_at_ms = now;
    state.evidence_keys.insert(key.generation, stored);
    let detail = format!("public key {}", key.public_key_hex);
    let subject = format!("evidence key generation {}", key.generation);
    let seq = state.audit.append(ctx.index, now, &request.actor, "evidence.key", &subject, &detail);
    Outcome::Audited { seq }
}

/// Records a signed checkpoint of an event still in the state's window, as an audit event.
pub(super) fn checkpoint(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    checkpoint: &SignedCheckpoint,
) -> Outcome {
    let now = request.proposed_at_ms;
    let refuse = |code, message: String| Outcome::rejected(code, message);
    let Some(newest) = state.evidence_keys.values().next_back() else {
        return refuse(ErrorCode::FailedPrecondition, "no evidence key is registered".into());
    };
    if checkpoint.generation != newest.generation {
        return refuse(
            ErrorCode::FailedPrecondition,
            format!(
                "checkpoints are signed by evidence key generation {}, not {}",
                newest.generation, checkpoint.generation
            ),
        );
    }
    if let Some(last) = &state.last_checkpoint
        && checkpoint.seq <= last.seq
    {
        return refuse(
            ErrorCode::AlreadyExists,
            format!("the audit chain is checkpointed through event {} already", last.seq),
        );
    }
    let covered = state.audit.recent().find(|e| e.seq == checkpoint.seq);
    let Some(event) = covered else {
        return refuse(
            ErrorCode::FailedPrecondition,
            format!("event {} is not among the recent audit events", checkpoint.seq),
        );
    };
    if event.hash != checkpoint.hash || event.at_ms != checkpoint.at_ms {
        return refuse(
            ErrorCode::InvalidArgument,
            format!("the checkpoint does not match event {}", checkpoint.seq),
        );
    }
    if let Err(why) = checkpoint.verify(&newest.public_key_hex) {
        return refuse(ErrorCode::InvalidArgument, why);
    }
    state.last_checkpoint = Some(checkpoint.clone());
    state.last_checkpoint_at_ms = now;
    let seq = state.audit.append(
        ctx.index,
        now,
        &request.actor,
        CHECKPOINT_ACTION,
        "audit",
        &checkpoint.to_detail(),
    );
    Outcome::Audited { seq }
}
