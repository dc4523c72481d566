//! Evidence bundles: what dsops hands an auditor for a period, and the check of it that needs
//! no server and no network.
//!
//! A bundle is a zip. Every file is listed with its SHA-256 in `manifest.sha256`, which the
//! cluster's evidence key signs (`manifest.sha256.sig`); the evidence key's certificate chains to
//! the cluster's root CA, whose certificate the bundle carries (an auditor compares its
//! fingerprint with the one they were given, or passes it with `--ca`).
//!
//! | file | holds |
//! |---|---|
//! | `bundle.json` | scope (environment, period), when and by whom it was made, the cluster id |
//! | `events.jsonl` | the audit events of the period and up to the first signed checkpoint after it, each with its chain link (`prev_hash`, `hash`) |
//! | `evidence-keys.json` | every evidence key generation: public key and certificate |
//! | `certs/*.pem` | the root CA and the peer, agent and operator CAs |
//! | `agents.json` | each agent's receipt-signing key, as the cluster registered it |
//! | `runs/<run>.json` | each rotation of the period: its receipts (signed bytes, signature) and its approvals (signed decisions with the operator's certificate) |
//! | `config/dsops.yaml` | the configuration in force at the end of the period |
//! | `reports/*.csv` | report tables, when the exporter adds them |
//!
//! [`verify`] checks, in order: the zip and its files are readable, the manifest lists exactly
//! the files present with their hashes, its signature and the evidence certificates chain to the
//! root, the events link one to the next, every checkpoint verifies with the key of its
//! generation and names the event it covers, the last event is covered by a checkpoint, every
//! receipt verifies with its agent's key, every approval with its operator's certificate (under
//! the operator CA) and over the plan it approved. Each failure names the file.

mod model;
mod verify;
mod write;

pub use model::{AgentKey, BundleScope, ReceiptEvidence, RunEvidence};
pub use verify::{Check, Failure, Report, verify};
pub use write::{BundleError, BundleInput, FORMAT, write};

/// The file the manifest is in.
pub const MANIFEST: &str = "manifest.sha256";
/// The manifest's signature by the evidence key.
pub const MANIFEST_SIGNATURE: &str = "manifest.sha256.sig";

#[cfg(test)]
mod tests;
