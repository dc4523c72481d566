//! Writing a bundle: the files, their manifest, and its signature by the evidence key.

use std::io::Write;

use dsops_state::{AuditEvent, EvidenceKey};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::model::{AgentKey, BundleScope, RunEvidence};
use crate::{MANIFEST, MANIFEST_SIGNATURE};

/// The bundle format this release writes.
pub const FORMAT: u32 = 1;

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Encoding a record failed.
    #[error("encoding {0}: {1}")]
    Encode(String, String),
    /// Writing the zip failed.
    #[error("writing the bundle: {0}")]
    Zip(String),
}

/// Everything a bundle holds.
#[derive(Debug, Clone)]
pub struct BundleInput {
    /// What it covers.
    pub scope: BundleScope,
    /// The audit events, consecutive, ending with a signed checkpoint.
    pub events: Vec<AuditEvent>,
    /// Every evidence key generation.
    pub evidence_keys: Vec<EvidenceKey>,
    /// The root CA certificate, PEM.
    pub root_ca_pem: String,
    /// The peer CA (issues node and evidence certificates).
    pub peer_ca_pem: String,
    /// The agent CA.
    pub agent_ca_pem: String,
    /// The operator CA (issues the certificates approvals are signed with).
    pub operator_ca_pem: String,
    /// The agents' receipt keys.
    pub agents: Vec<AgentKey>,
    /// The runs of the period.
    pub runs: Vec<RunEvidence>,
    /// The configuration in force, if any.
    pub config_yaml: Option<String>,
    /// More files (`reports/population.csv`, ...): name and content.
    pub extra: Vec<(String, Vec<u8>)>,
}

fn json<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, BundleError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| BundleError::Encode(what.to_owned(), e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The files of `input`, by name, in the order they are written.
fn files(input: &BundleInput) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
    let mut files = vec![("bundle.json".to_owned(), json("bundle.json", &input.scope)?)];
    let mut events = Vec::new();
    for event in &input.events {
        serde_json::to_writer(&mut events, event)
            .map_err(|e| BundleError::Encode("events.jsonl".into(), e.to_string()))?;
        events.push(b'\n');
    }
    files.push(("events.jsonl".into(), events));
    files.push(("evidence-keys.json".into(), json("evidence-keys.json", &input.evidence_keys)?));
    for (name, pem) in [
        ("root-ca", &input.root_ca_pem),
        ("peer-ca", &input.peer_ca_pem),
        ("agent-ca", &input.agent_ca_pem),
        ("operator-ca", &input.operator_ca_pem),
    ] {
        files.push((format!("certs/{name}.pem"), pem.as_bytes().to_vec()));
    }
    files.push(("agents.json".into(), json("agents.json", &input.agents)?));
    for run in &input.runs {
        let name = format!("runs/{}.json", run.run_id);
        files.push((name.clone(), json(&name, run)?));
    }
    if let Some(config) = &input.config_yaml {
        files.push(("config/dsops.yaml".into(), config.as_bytes().to_vec()));
    }
    files.extend(input.extra.iter().cloned());
    files.push(("README.txt".into(), README.as_bytes().to_vec()));
    Ok(files)
}

/// `<sha256 hex>  <name>` per file, sorted by name (the `sha256sum` format).
pub(crate) fn manifest(files: &[(String, Vec<u8>)]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", dsops_proto::hex(&Sha256::digest(bytes))))
        .collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat()
}

/// The signature file: the generation and the Ed25519 signature over the manifest's bytes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ManifestSignature {
    pub generation: u32,
    pub signature_hex: String,
}

/// Writes the bundle, the manifest signed by `signing` (evidence key `scope.generation`).
pub fn write(
    input: &BundleInput,
    signing: &ed25519_dalek::SigningKey,
) -> Result<Vec<u8>, BundleError> {
    let mut files = files(input)?;
    let manifest = manifest(&files);
    let signature = ManifestSignature {
        generation: input.scope.generation,
        signature_hex: dsops_proto::hex(&signing.sign(manifest.as_bytes()).to_bytes()),
    };
    files.push((MANIFEST.to_owned(), manifest.into_bytes()));
    files.push((MANIFEST_SIGNATURE.to_owned(), json(MANIFEST_SIGNATURE, &signature)?));
    zip_files(&files)
}

/// Files into a zip, deflated, with fixed times (the same input gives the same bytes).
pub(crate) fn zip_files(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, BundleError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let zipped = |e: zip::result::ZipError| BundleError::Zip(e.to_string());
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options).map_err(zipped)?;
        zip.write_all(bytes).map_err(|e| BundleError::Zip(e.to_string()))?;
    }
    Ok(zip.finish().map_err(zipped)?.into_inner())
}

const README: &str = "\
dsops evidence bundle
=====================

Verify it with `dsops evidence verify bundle.zip` (no server, no network needed), or by hand:

1. `sha256sum -c manifest.sha256` checks every file against the manifest.
2. manifest.sha256.sig is an Ed25519 signature over manifest.sha256 by the evidence key of
   the generation it names (evidence-keys.json); that key's certificate is issued by
   certs/peer-ca.pem, which is issued by certs/root-ca.pem. Compare the root's fingerprint
   with the one your cluster's operators gave you.
3. events.jsonl is a hash chain: each event's hash is SHA-256 over its fields (each prefixed
   as text, numbers in decimal, each prefixed by its byte length as 8 bytes big-endian: seq,
   index, at_ms, actor, action, subject, detail,
   prev_hash) and each prev_hash is the hash of the event before it. Events whose action is
   audit.checkpoint carry a signed statement of an earlier event's hash: the text
   \"dsops audit checkpoint v1\\n<generation>\\n<seq>\\n<hash>\\n<at_ms>\\n\" signed with the
   evidence key of that generation. The last event of the period is covered by one.
4. runs/<run>.json: each receipt's body_hex is the protobuf body an agent signed with its key
   (agents.json); each approval decision is signed (ECDSA P-256, DER) by the operator's
   certificate, issued by certs/operator-ca.pem, over
   \"dsops-approval-v1\\nrun=..\\nround=..\\nplan=..\\ndecision=approve|deny\\nsigned_at_ms=..\\nreason=..\".
";
