//! The offline check of a bundle: every signature, every chain link, the manifest. Each
//! finding names the file (and the line, event or receipt) it is about.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use dsops_proto::domain::SignedReceipt;
use dsops_state::{AuditEvent, CHECKPOINT_ACTION, EvidenceKey, SignedCheckpoint};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::model::{AgentKey, BundleScope, RunEvidence};
use crate::write::ManifestSignature;
use crate::{MANIFEST, MANIFEST_SIGNATURE};

/// The most files a bundle may hold, and the most bytes unpacked.
const MAX_FILES: usize = 200_000;
const MAX_BYTES: u64 = 4 << 30;

/// What kind of check failed; each has its own exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// Not a bundle: not a zip, a file missing or unreadable.
    Unreadable,
    /// A file differs from the manifest, is missing from it, or is not in it.
    Manifest,
    /// The manifest's signature, or a certificate of the evidence key, does not verify.
    Signature,
    /// The audit events do not form one unbroken chain.
    Chain,
    /// A checkpoint does not verify, or events are left uncovered.
    Checkpoint,
    /// A receipt does not verify with its agent's key.
    Receipt,
    /// An approval does not verify or is about another plan.
    Approval,
}

impl Failure {
    /// The exit status of `dsops evidence verify` for it.
    pub fn exit_code(self) -> i32 {
        match self {
            Failure::Unreadable => 10,
            Failure::Manifest => 11,
            Failure::Signature => 12,
            Failure::Chain => 13,
            Failure::Checkpoint => 14,
            Failure::Receipt => 15,
            Failure::Approval => 16,
        }
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Unreadable => "bundle",
            Failure::Manifest => "manifest",
            Failure::Signature => "signature",
            Failure::Chain => "chain",
            Failure::Checkpoint => "checkpoint",
            Failure::Receipt => "receipt",
            Failure::Approval => "approval",
        }
    }
}

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its class.
    pub class: Failure,
    /// Whether it held.
    pub ok: bool,
    /// What was checked, or what is wrong and where.
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The bundle's scope, when readable.
    pub scope: Option<BundleScope>,
    /// SHA-256 of the root CA certificate (DER), hex: compare it with your cluster's.
    pub root_fingerprint: String,
}

impl Report {
    /// The first class that failed, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.checks.iter().filter(|c| !c.ok).map(|c| c.class).min()
    }

    fn pass(&mut self, class: Failure, detail: impl Into<String>) {
        self.checks.push(Check { class, ok: true, detail: detail.into() });
    }

    fn fail(&mut self, class: Failure, detail: impl Into<String>) {
        self.checks.push(Check { class, ok: false, detail: detail.into() });
    }
}

/// The files of a zip by name; `Err` says why it is not readable.
fn unzip(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a zip archive: {e}"))?;
    if archive.len() > MAX_FILES {
        return Err(format!("{} files; a bundle holds at most {MAX_FILES}", archive.len()));
    }
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| format!("entry {i}: {e}"))?;
        let name = file.name().map_err(|e| format!("entry {i}: {e}"))?.into_owned();
        if file.enclosed_name().is_none() {
            return Err(format!("{name}: a path outside the bundle"));
        }
        total = total.saturating_add(file.size());
        if total > MAX_BYTES {
            return Err("more than 4 GiB unpacked".into());
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(|e| format!("{name}: {e}"))?;
        if files.insert(name.clone(), content).is_some() {
            return Err(format!("{name}: twice in the archive"));
        }
    }
    Ok(files)
}

fn parse<T: serde::de::DeserializeOwned>(
    files: &BTreeMap<String, Vec<u8>>,
    name: &str,
) -> Result<T, String> {
    let bytes = files.get(name).ok_or_else(|| format!("{name}: missing"))?;
    serde_json::from_slice(bytes).map_err(|e| format!("{name}: {e}"))
}

fn certificate(files: &BTreeMap<String, Vec<u8>>, name: &str) -> Result<Vec<u8>, String> {
    let pem = files.get(name).ok_or_else(|| format!("{name}: missing"))?;
    let pem = std::str::from_utf8(pem).map_err(|_| format!("{name}: not text"))?;
    dsops_identity::pem_to_der(pem).map_err(|e| format!("{name}: {e}"))
}

/// Whether the certificate `child` (DER) was signed by the key of `issuer` (DER).
fn issued_by(child: &[u8], issuer: &[u8]) -> Result<(), String> {
    let (_, child) = X509Certificate::from_der(child).map_err(|e| e.to_string())?;
    let (_, issuer) = X509Certificate::from_der(issuer).map_err(|e| e.to_string())?;
    child.verify_signature(Some(issuer.public_key())).map_err(|e| e.to_string())
}

/// Checks the bundle in `bytes`; with `trusted_root` (PEM), its root CA must be that one.
pub fn verify(bytes: &[u8], trusted_root: Option<&str>) -> Report {
    let mut report = Report::default();
    let files = match unzip(bytes) {
        Ok(files) => files,
        Err(why) => {
            report.fail(Failure::Unreadable, why);
            return report;
        }
    };
    check_manifest(&files, &mut report);
    let Some(keys) = check_signature(&files, trusted_root, &mut report) else {
        return report;
    };
    let events = check_chain(&files, &report.scope.clone(), &mut report);
    check_checkpoints(&events, &keys, &report.scope.clone(), &mut report);
    check_runs(&files, &mut report);
    report
}

fn check_manifest(files: &BTreeMap<String, Vec<u8>>, report: &mut Report) {
    let Some(manifest) = files.get(MANIFEST).and_then(|m| std::str::from_utf8(m).ok()) else {
        report.fail(Failure::Unreadable, format!("{MANIFEST}: missing or not text"));
        return;
    };
    let mut listed = HashMap::new();
    for (n, line) in manifest.lines().enumerate() {
        let Some((hash, name)) = line.split_once("  ") else {
            report.fail(
                Failure::Manifest,
                format!("{MANIFEST} line {}: not `<sha256>  <file>`", n + 1),
            );
            continue;
        };
        listed.insert(name.to_owned(), hash.to_owned());
    }
    let mut bad = 0;
    for (name, hash) in &listed {
        match files.get(name) {
            None => {
                bad += 1;
                report.fail(Failure::Manifest, format!("{name}: listed in the manifest, missing"));
            }
            Some(bytes) if dsops_proto::hex(&Sha256::digest(bytes)) != *hash => {
                bad += 1;
                report.fail(Failure::Manifest, format!("{name}: differs from the manifest"));
            }
            Some(_) => {}
        }
    }
    for name in files.keys() {
        if name != MANIFEST && name != MANIFEST_SIGNATURE && !listed.contains_key(name) {
            bad += 1;
            report.fail(Failure::Manifest, format!("{name}: not in the manifest"));
        }
    }
    if bad == 0 {
        report.pass(Failure::Manifest, format!("{} files match the manifest", listed.len()));
    }
}

/// Checks the certificates and the manifest signature; returns the evidence keys.
fn check_signature(
    files: &BTreeMap<String, Vec<u8>>,
    trusted_root: Option<&str>,
    report: &mut Report,
) -> Option<Vec<EvidenceKey>> {
    let read = || -> Result<_, String> {
        let scope: BundleScope = parse(files, "bundle.json")?;
        let keys: Vec<EvidenceKey> = parse(files, "evidence-keys.json")?;
        let signature: ManifestSignature = parse(files, MANIFEST_SIGNATURE)?;
        let root = certificate(files, "certs/root-ca.pem")?;
        let peer = certificate(files, "certs/peer-ca.pem")?;
        Ok((scope, keys, signature, root, peer))
    };
    let (scope, keys, signature, root, peer) = match read() {
        Ok(read) => read,
        Err(why) => {
            report.fail(Failure::Unreadable, why);
            return None;
        }
    };
    report.scope = Some(scope);
    report.root_fingerprint = dsops_proto::hex(&Sha256::digest(&root));
    if let Some(trusted) = trusted_root {
        match dsops_identity::pem_to_der(trusted) {
            Ok(trusted) if trusted == root => {
                report.pass(Failure::Signature, "certs/root-ca.pem is the trusted root")
            }
            Ok(_) => report.fail(Failure::Signature, "certs/root-ca.pem is not the trusted root"),
            Err(e) => report.fail(Failure::Signature, format!("the trusted root: {e}")),
        }
    }
    match issued_by(&peer, &root) {
        Ok(()) => report.pass(Failure::Signature, "certs/peer-ca.pem is issued by the root"),
        Err(e) => report
            .fail(Failure::Signature, format!("certs/peer-ca.pem: not issued by the root: {e}")),
    }
    for key in &keys {
        let what = format!("evidence-keys.json generation {}", key.generation);
        let checked = dsops_identity::pem_to_der(&key.certificate_pem)
            .map_err(|e| e.to_string())
            .and_then(|der| {
                issued_by(&der, &peer)?;
                let (_, cert) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
                let named = dsops_proto::hex(&cert.public_key().subject_public_key.data);
                if named != key.public_key_hex {
                    return Err("the certificate names another key".into());
                }
                Ok(())
            });
        match checked {
            Ok(()) => report
                .pass(Failure::Signature, format!("{what}: certificate issued by the peer CA")),
            Err(e) => report.fail(Failure::Signature, format!("{what}: {e}")),
        }
    }
    let manifest = files.get(MANIFEST).cloned().unwrap_or_default();
    let signed = keys
        .iter()
        .find(|k| k.generation == signature.generation)
        .ok_or_else(|| format!("no evidence key generation {}", signature.generation))
        .and_then(|key| verify_ed25519(&key.public_key_hex, &manifest, &signature.signature_hex));
    match signed {
        Ok(()) => report.pass(
            Failure::Signature,
            format!(
                "{MANIFEST_SIGNATURE}: signed by evidence key generation {}",
                signature.generation
            ),
        ),
        Err(e) => report.fail(Failure::Signature, format!("{MANIFEST_SIGNATURE}: {e}")),
    }
    Some(keys)
}

fn verify_ed25519(key_hex: &str, message: &[u8], signature_hex: &str) -> Result<(), String> {
    let key = dsops_proto::hex_decode(key_hex)
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
        .ok_or("not an Ed25519 public key")?;
    let signature = dsops_proto::hex_decode(signature_hex)
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or("not a 64-byte signature")?;
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| "the signature does not verify".to_owned())
}

fn check_chain(
    files: &BTreeMap<String, Vec<u8>>,
    scope: &Option<BundleScope>,
    report: &mut Report,
) -> Vec<AuditEvent> {
    let Some(text) = files.get("events.jsonl").and_then(|t| std::str::from_utf8(t).ok()) else {
        report.fail(Failure::Unreadable, "events.jsonl: missing or not text");
        return Vec::new();
    };
    let mut events: Vec<AuditEvent> = Vec::new();
    let mut broken = 0;
    for (n, line) in text.lines().enumerate() {
        let at = format!("events.jsonl line {}", n + 1);
        let event: AuditEvent = match serde_json::from_str(line) {
            Ok(event) => event,
            Err(e) => {
                report.fail(Failure::Chain, format!("{at}: not an audit event: {e}"));
                broken += 1;
                continue;
            }
        };
        if event.compute_hash() != event.hash {
            broken += 1;
            report.fail(
                Failure::Chain,
                format!("{at} (event {}): its hash does not match its fields", event.seq),
            );
        }
        if let Some(previous) = events.last() {
            if event.seq != previous.seq + 1 {
                broken += 1;
                report.fail(
                    Failure::Chain,
                    format!(
                        "{at}: event {} follows event {} (missing or out of order)",
                        event.seq, previous.seq
                    ),
                );
            } else if event.prev_hash != previous.hash {
                broken += 1;
                report.fail(
                    Failure::Chain,
                    format!("{at} (event {}): not linked to event {}", event.seq, previous.seq),
                );
            }
        }
        events.push(event);
    }
    let first = scope.as_ref().map_or(0, |s| s.first_seq);
    if events.first().map(|e| e.seq) != Some(first) {
        broken += 1;
        report.fail(
            Failure::Chain,
            format!(
                "events.jsonl: starts at event {:?}, the bundle says {first}",
                events.first().map(|e| e.seq)
            ),
        );
    }
    if broken == 0 {
        report.pass(
            Failure::Chain,
            format!(
                "events.jsonl: {} events, {} to {}, each linked to the one before",
                events.len(),
                first,
                events.last().map_or(0, |e| e.seq)
            ),
        );
    }
    events
}

fn check_checkpoints(
    events: &[AuditEvent],
    keys: &[EvidenceKey],
    scope: &Option<BundleScope>,
    report: &mut Report,
) {
    let mut covered = None;
    let mut bad = 0;
    let mut count = 0;
    for event in events.iter().filter(|e| e.action == CHECKPOINT_ACTION) {
        let at = format!("events.jsonl event {}", event.seq);
        let Some(checkpoint) = SignedCheckpoint::from_detail(&event.detail) else {
            bad += 1;
            report.fail(Failure::Checkpoint, format!("{at}: not a checkpoint"));
            continue;
        };
        let Some(key) = keys.iter().find(|k| k.generation == checkpoint.generation) else {
            bad += 1;
            report.fail(
                Failure::Checkpoint,
                format!("{at}: no evidence key generation {}", checkpoint.generation),
            );
            continue;
        };
        if let Err(e) = checkpoint.verify(&key.public_key_hex) {
            bad += 1;
            report.fail(Failure::Checkpoint, format!("{at}: {e}"));
            continue;
        }
        // The event a checkpoint signs is in the file, or is the one just before its first
        // event (a bundle that starts at a retention cut): either way its hash is known here.
        let before_first = events.first().filter(|first| first.seq == checkpoint.seq + 1);
        if let Some(first) = before_first
            && first.prev_hash != checkpoint.hash
        {
            bad += 1;
            report.fail(
                Failure::Checkpoint,
                format!(
                    "{at}: signs another hash for event {} than the first event's link to it",
                    checkpoint.seq
                ),
            );
            continue;
        }
        if let Some(target) = events.iter().find(|e| e.seq == checkpoint.seq)
            && (target.hash != checkpoint.hash || target.at_ms != checkpoint.at_ms)
        {
            bad += 1;
            report.fail(
                Failure::Checkpoint,
                format!("{at}: signs another hash for event {}", checkpoint.seq),
            );
            continue;
        }
        count += 1;
        covered = covered.max(Some(checkpoint.seq));
    }
    let through = scope.as_ref().map_or(0, |s| s.through_seq);
    match (events.last(), covered) {
        (Some(last), _) if last.action != CHECKPOINT_ACTION => {
            bad += 1;
            report.fail(
                Failure::Checkpoint,
                format!("events.jsonl: event {} is after the last signed checkpoint (appended, or the checkpoint was cut off)", last.seq),
            );
        }
        (_, Some(covered)) if covered >= through => {}
        _ => {
            bad += 1;
            report.fail(
                Failure::Checkpoint,
                format!("events.jsonl: the period's events through {through} are not covered by a signed checkpoint (truncated?)"),
            );
        }
    }
    if bad == 0 {
        report.pass(
            Failure::Checkpoint,
            format!(
                "{count} signed checkpoints verify; the last covers event {}",
                covered.unwrap_or(0)
            ),
        );
    }
}

fn check_runs(files: &BTreeMap<String, Vec<u8>>, report: &mut Report) {
    let agents: Vec<AgentKey> = match parse(files, "agents.json") {
        Ok(agents) => agents,
        Err(e) => {
            report.fail(Failure::Unreadable, e);
            return;
        }
    };
    let operator_ca = certificate(files, "certs/operator-ca.pem");
    let (mut receipts, mut decisions, mut bad_receipts, mut bad_decisions) = (0, 0, 0, 0);
    for name in files.keys().filter(|n| n.starts_with("runs/") && n.ends_with(".json")) {
        let run: RunEvidence = match parse(files, name) {
            Ok(run) => run,
            Err(e) => {
                report.fail(Failure::Unreadable, e);
                continue;
            }
        };
        for (i, receipt) in run.receipts.iter().enumerate() {
            receipts += 1;
            let at =
                format!("{name} receipt {} ({} attempt {})", i + 1, receipt.step, receipt.attempt);
            if let Err(e) = check_receipt(&run, receipt, &agents) {
                bad_receipts += 1;
                report.fail(Failure::Receipt, format!("{at}: {e}"));
            }
        }
        for decision in &run.decisions {
            decisions += 1;
            let at = format!("{name} approval by {} (round {})", decision.operator, decision.round);
            let checked = operator_ca
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|ca| check_decision(&run, decision, ca));
            if let Err(e) = checked {
                bad_decisions += 1;
                report.fail(Failure::Approval, format!("{at}: {e}"));
            }
        }
    }
    if bad_receipts == 0 {
        report
            .pass(Failure::Receipt, format!("{receipts} receipts verify with their agents' keys"));
    }
    if bad_decisions == 0 {
        report.pass(Failure::Approval, format!("{decisions} approval decisions verify"));
    }
}

fn check_receipt(
    run: &RunEvidence,
    receipt: &crate::ReceiptEvidence,
    agents: &[AgentKey],
) -> Result<(), String> {
    let agent = agents
        .iter()
        .find(|a| a.agent_id == receipt.agent_id)
        .ok_or_else(|| format!("agent {} is not in agents.json", receipt.agent_id))?;
    let body = dsops_proto::hex_decode(&receipt.body_hex).ok_or("body_hex is not hex")?;
    let signature =
        dsops_proto::hex_decode(&receipt.signature_hex).ok_or("signature_hex is not hex")?;
    let signed = SignedReceipt::try_from(dsops_proto::wire::common::Receipt { body, signature })
        .map_err(|e| format!("not a receipt: {e}"))?;
    let key = dsops_proto::hex_decode(&agent.public_key_hex)
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or("the agent key is not 32 bytes of hex")?;
    signed.verify(&key).map_err(|e| e.to_string())?;
    if signed.body.run_id.to_string() != run.run_id {
        return Err(format!("signed for run {}", signed.body.run_id));
    }
    if signed.body.agent_id.to_string() != receipt.agent_id {
        return Err(format!("signed by agent {}", signed.body.agent_id));
    }
    Ok(())
}

fn check_decision(
    run: &RunEvidence,
    decision: &dsops_state::ApprovalDecision,
    operator_ca: &[u8],
) -> Result<(), String> {
    let cert = dsops_identity::pem_to_der(&decision.certificate_pem).map_err(|e| e.to_string())?;
    issued_by(&cert, operator_ca)
        .map_err(|e| format!("certificate not issued by the operator CA: {e}"))?;
    let signature =
        dsops_proto::hex_decode(&decision.signature_hex).ok_or("signature is not hex")?;
    let bytes = dsops_proto::domain::decision_bytes(
        &run.run_id,
        decision.round,
        &decision.plan_digest,
        decision.approve,
        decision.signed_at_ms,
        &decision.reason,
    );
    dsops_identity::verify_message(&decision.certificate_pem, &bytes, &signature)
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    if decision.round == run.approval_round
        && Some(&decision.plan_digest) != run.plan_digest.as_ref()
    {
        return Err(format!(
            "signs plan {}, but the run's plan is {}",
            decision.plan_digest,
            run.plan_digest.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}
