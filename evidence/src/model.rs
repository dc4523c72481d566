//! The records a bundle holds, as JSON.

use dsops_state::ApprovalDecision;
use serde::{Deserialize, Serialize};

/// What a bundle covers (`bundle.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleScope {
    /// The bundle format.
    pub format: u32,
    /// The cluster's id (its certificates name it).
    pub cluster_id: String,
    /// The environment, or empty for all.
    pub env: String,
    /// The period: from (inclusive), ms since the epoch.
    pub from_ms: u64,
    /// ... to (exclusive).
    pub to_ms: u64,
    /// When the bundle was made.
    pub created_at_ms: u64,
    /// Who asked for it.
    pub created_by: String,
    /// The evidence key generation that signs the manifest.
    pub generation: u32,
    /// The first event in `events.jsonl`.
    pub first_seq: u64,
    /// The last event of the period: a signed checkpoint in the bundle covers it.
    pub through_seq: u64,
}

/// An agent's receipt-signing key (`agents.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKey {
    /// The agent.
    pub agent_id: String,
    /// Its segment.
    pub segment: String,
    /// Its Ed25519 public key, hex.
    pub public_key_hex: String,
}

/// One signed receipt of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvidence {
    /// The step, as the run recorded it.
    pub step: String,
    /// The attempt.
    pub attempt: u32,
    /// The agent that signed.
    pub agent_id: String,
    /// When the cluster recorded it, ms since the epoch.
    pub at_ms: u64,
    /// The exact signed bytes (the protobuf body), hex.
    pub body_hex: String,
    /// The Ed25519 signature over them, hex.
    pub signature_hex: String,
}

/// One rotation of the period (`runs/<run>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunEvidence {
    /// The run.
    pub run_id: String,
    /// Its environment ...
    pub env: String,
    /// ... and variable.
    pub key: String,
    /// How it ended (or where it stands).
    pub phase: String,
    /// Who asked.
    pub requested_by: String,
    /// Why.
    pub reason: String,
    /// When, ms since the epoch.
    pub requested_at_ms: u64,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Its receipts, in order.
    pub receipts: Vec<ReceiptEvidence>,
    /// The digest of the plan its approvals are about (none without approval).
    pub plan_digest: Option<String>,
    /// The approval round the current decisions belong to.
    pub approval_round: u32,
    /// Every recorded decision (this round's and earlier ones).
    pub decisions: Vec<ApprovalDecision>,
}
