//! A bundle made from a real chain, real certificates and real signatures verifies; each way of
//! tampering with it is caught, in its own class, naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use dsops_proto::domain::{
    AgentId, Generation, ReceiptBody, RunId, SignedReceipt, Step, StepOutcome,
};
use dsops_state::{ApprovalDecision, AuditLog, CHECKPOINT_ACTION, EvidenceKey, SignedCheckpoint};
use ed25519_dalek::{Signer, SigningKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};

use crate::write::{ManifestSignature, manifest, zip_files};
use crate::{
    AgentKey, BundleInput, BundleScope, Failure, MANIFEST, MANIFEST_SIGNATURE, ReceiptEvidence,
    RunEvidence, verify, write,
};

const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn params(name: &str, ca: bool) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params
}

/// A CA issued by `issuer` (self-signed without one): its certificate PEM and issuer.
fn ca(name: &str, issuer: Option<&Issuer<'static, KeyPair>>) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let params = params(name, true);
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    let pem = cert.pem();
    (pem.clone(), Issuer::from_ca_cert_pem(&pem, key).unwrap())
}

struct Fixture {
    input: BundleInput,
    evidence: SigningKey,
    agent: SigningKey,
}

fn fixture() -> Fixture {
    let (root_pem, root) = ca("root", None);
    let (peer_pem, peer) = ca("peer", Some(&root));
    let (agent_ca_pem, _) = ca("agents", Some(&root));
    let (operator_pem, operator_ca) = ca("operators", Some(&root));
    let evidence = SigningKey::from_bytes(&[5; 32]);
    let mut pkcs8 = PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(&evidence.to_bytes());
    let subject = KeyPair::try_from(pkcs8.as_slice()).unwrap();
    let mut evidence_params = params("evidence", false);
    evidence_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::TimeStamping];
    let evidence_cert = evidence_params.signed_by(&subject, &peer).unwrap().pem();
    let key = EvidenceKey {
        generation: 1,
        public_key_hex: dsops_proto::hex(&evidence.verifying_key().to_bytes()),
        certificate_pem: evidence_cert,
        registered_at_ms: 1,
    };

    // A chain: a run's events, then a signed checkpoint of the head.
    let mut log = AuditLog::default();
    for (i, action) in
        ["config.stored", "run.requested", "approval.approved", "run.completed"].iter().enumerate()
    {
        log.append(i as u64 + 1, 1_000 + i as u64, "alice", action, "prod/DB", "detail");
    }
    let head = log.head();
    let mut checkpoint = SignedCheckpoint {
        generation: 1,
        seq: head.seq,
        hash: head.hash,
        at_ms: head.at_ms,
        signature_hex: String::new(),
    };
    checkpoint.signature_hex = dsops_proto::hex(&evidence.sign(&checkpoint.message()).to_bytes());
    log.append(9, 2_000, "node-1", CHECKPOINT_ACTION, "audit", &checkpoint.to_detail());

    // A receipt signed by the agent; an approval signed by an operator.
    let agent = SigningKey::from_bytes(&[7; 32]);
    let receipt = SignedReceipt::sign(
        ReceiptBody {
            run_id: RunId::parse("run-1", "run_id").unwrap(),
            generation: Generation::parse(1, "generation").unwrap(),
            step: Step::Apply,
            target: "svc://pg?kind=db_password".to_owned(),
            value_fingerprint: None,
            performed_at: UNIX_EPOCH + Duration::from_millis(1_500),
            outcome: StepOutcome::Succeeded,
            detail: String::new(),
            agent_id: AgentId::parse("agent-a", "agent_id").unwrap(),
            attempt: 1,
            retry_after: None,
            renew_at: None,
        },
        &agent,
    );
    let operator_key = KeyPair::generate().unwrap();
    let operator_cert = params("anna", false).signed_by(&operator_key, &operator_ca).unwrap().pem();
    let digest = "ab".repeat(32);
    let bytes = dsops_proto::domain::decision_bytes("run-1", 1, &digest, true, 1_200, "ok");
    let signature = dsops_identity::sign_message(&operator_key.serialize_pem(), &bytes).unwrap();
    let decision = ApprovalDecision {
        operator: "anna".into(),
        approve: true,
        reason: "ok".into(),
        round: 1,
        plan_digest: digest.clone(),
        signed_at_ms: 1_200,
        recorded_at_ms: 1_201,
        signature_hex: dsops_proto::hex(&signature),
        certificate_pem: operator_cert,
    };
    let run = RunEvidence {
        run_id: "run-1".into(),
        env: "prod".into(),
        key: "DB".into(),
        phase: "completed".into(),
        requested_by: "alice".into(),
        reason: "CHG-1".into(),
        requested_at_ms: 1_001,
        finished_at_ms: Some(1_003),
        receipts: vec![ReceiptEvidence {
            step: "apply".into(),
            attempt: 1,
            agent_id: "agent-a".into(),
            at_ms: 1_500,
            body_hex: dsops_proto::hex(&receipt.body_bytes),
            signature_hex: dsops_proto::hex(&receipt.signature),
        }],
        plan_digest: Some(digest),
        approval_round: 1,
        decisions: vec![decision],
    };
    let events = log.events();
    let input = BundleInput {
        scope: BundleScope {
            format: 1,
            cluster_id: "c1".into(),
            env: "prod".into(),
            from_ms: 1_000,
            to_ms: 1_900,
            created_at_ms: 3_000,
            created_by: "auditor".into(),
            generation: 1,
            first_seq: 1,
            through_seq: 4,
        },
        events,
        evidence_keys: vec![key],
        root_ca_pem: root_pem,
        peer_ca_pem: peer_pem,
        agent_ca_pem,
        operator_ca_pem: operator_pem,
        agents: vec![AgentKey {
            agent_id: "agent-a".into(),
            segment: "default".into(),
            public_key_hex: dsops_proto::hex(&agent.verifying_key().to_bytes()),
        }],
        runs: vec![run],
        config_yaml: Some("version: 1\n".into()),
        extra: Vec::new(),
    };
    Fixture { input, evidence, agent }
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().unwrap().into_owned(), content)
        })
        .collect()
}

/// The bundle with `edit` applied to its files; with `resign`, the manifest is rebuilt and
/// signed again with `key` (as an exporter holding the evidence key would), so only the deeper
/// checks can catch the edit.
fn tampered(
    bundle: &[u8],
    key: Option<&SigningKey>,
    edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Vec<u8> {
    let mut files = unzip(bundle);
    edit(&mut files);
    if let Some(key) = key {
        files.retain(|(n, _)| n != MANIFEST && n != MANIFEST_SIGNATURE);
        let manifest = manifest(&files);
        let signature = ManifestSignature {
            generation: 1,
            signature_hex: dsops_proto::hex(&key.sign(manifest.as_bytes()).to_bytes()),
        };
        files.push((MANIFEST.into(), manifest.into_bytes()));
        files.push((MANIFEST_SIGNATURE.into(), serde_json::to_vec(&signature).unwrap()));
    }
    zip_files(&files).unwrap()
}

fn file<'a>(files: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut files.iter_mut().find(|(n, _)| n == name).expect(name).1
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8(bytes.to_vec()).unwrap().lines().map(str::to_owned).collect()
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes()
}

/// Asserts the bundle fails first in `class`, with a finding that mentions `needle`.
fn fails(bundle: &[u8], class: Failure, needle: &str) {
    let report = verify(bundle, None);
    assert_eq!(report.failure(), Some(class), "{:#?}", report.checks);
    assert!(
        report.checks.iter().any(|c| !c.ok && c.class == class && c.detail.contains(needle)),
        "{needle:?} in {:#?}",
        report.checks
    );
}

#[test]
fn a_genuine_bundle_verifies_and_is_the_same_bytes_every_time() {
    let f = fixture();
    let bundle = write(&f.input, &f.evidence).unwrap();
    let report = verify(&bundle, Some(&f.input.root_ca_pem));
    assert_eq!(report.failure(), None, "{:#?}", report.checks);
    let said: Vec<&str> = report.checks.iter().map(|c| c.detail.as_str()).collect();
    assert!(said.iter().any(|d| d.contains("5 events, 1 to 5")), "{said:#?}");
    assert!(
        said.iter().any(|d| d.contains("1 signed checkpoints verify; the last covers event 4"))
    );
    assert!(said.iter().any(|d| d.contains("1 receipts verify")), "{said:#?}");
    assert!(said.iter().any(|d| d.contains("1 approval decisions verify")), "{said:#?}");
    assert_eq!(report.root_fingerprint.len(), 64);
    assert_eq!(write(&f.input, &f.evidence).unwrap(), bundle, "deterministic");
}

#[test]
fn tampering_is_caught_in_its_class_naming_the_file() {
    let f = fixture();
    let bundle = write(&f.input, &f.evidence).unwrap();
    let resign = Some(&f.evidence);

    // Not a zip at all.
    fails(b"PK\x03\x04 nope", Failure::Unreadable, "not a zip");
    // A flipped byte: the manifest names the file.
    let flipped = tampered(&bundle, None, |files| file(files, "events.jsonl")[40] ^= 1);
    fails(&flipped, Failure::Manifest, "events.jsonl: differs from the manifest");
    let extra = tampered(&bundle, None, |files| files.push(("notes.txt".into(), b"x".to_vec())));
    fails(&extra, Failure::Manifest, "notes.txt: not in the manifest");
    // The manifest signed by another key; a root other than the trusted one.
    let forged = tampered(&bundle, Some(&SigningKey::from_bytes(&[6; 32])), |_| {});
    fails(&forged, Failure::Signature, "manifest.sha256.sig: the signature does not verify");
    let other_root = fixture().input.root_ca_pem;
    let report = verify(&bundle, Some(&other_root));
    assert_eq!(report.failure(), Some(Failure::Signature));

    // With the manifest re-signed, the chain and its checkpoints still catch every edit.
    let edited = tampered(&bundle, resign, |files| {
        let events = file(files, "events.jsonl");
        let text = String::from_utf8(events.clone()).unwrap().replacen(
            "run.requested",
            "run.requestex",
            1,
        );
        *events = text.into_bytes();
    });
    fails(&edited, Failure::Chain, "events.jsonl line 2 (event 2): its hash does not match");
    let deleted = tampered(&bundle, resign, |files| {
        let mut l = lines(file(files, "events.jsonl"));
        l.remove(2);
        *file(files, "events.jsonl") = joined(&l);
    });
    fails(&deleted, Failure::Chain, "event 4 follows event 2");
    let reordered = tampered(&bundle, resign, |files| {
        let mut l = lines(file(files, "events.jsonl"));
        l.swap(1, 2);
        *file(files, "events.jsonl") = joined(&l);
    });
    fails(&reordered, Failure::Chain, "events.jsonl line 2");
    let truncated = tampered(&bundle, resign, |files| {
        let mut l = lines(file(files, "events.jsonl"));
        l.pop();
        *file(files, "events.jsonl") = joined(&l);
    });
    fails(&truncated, Failure::Checkpoint, "event 4 is after the last signed checkpoint");
    // Appended: a well-formed event, linked and hashed, after the checkpoint.
    let appended = tampered(&bundle, resign, |files| {
        let mut l = lines(file(files, "events.jsonl"));
        let last: dsops_state::AuditEvent = serde_json::from_str(l.last().unwrap()).unwrap();
        let mut next = last.clone();
        next.seq += 1;
        next.action = "run.completed".into();
        next.prev_hash = last.hash;
        next.hash = next.compute_hash();
        l.push(serde_json::to_string(&next).unwrap());
        *file(files, "events.jsonl") = joined(&l);
    });
    fails(&appended, Failure::Checkpoint, "event 6 is after the last signed checkpoint");

    // A receipt signed again by another key.
    let resigned_receipt = tampered(&bundle, resign, |files| {
        let run = file(files, "runs/run-1.json");
        let mut value: RunEvidence = serde_json::from_slice(run).unwrap();
        let body = dsops_proto::hex_decode(&value.receipts[0].body_hex).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]);
        value.receipts[0].signature_hex = dsops_proto::hex(&other.sign(&body).to_bytes());
        *run = serde_json::to_vec(&value).unwrap();
    });
    fails(&resigned_receipt, Failure::Receipt, "runs/run-1.json receipt 1 (apply attempt 1)");
    // An approval about another plan than the run's.
    let other_plan = tampered(&bundle, resign, |files| {
        let run = file(files, "runs/run-1.json");
        let mut value: RunEvidence = serde_json::from_slice(run).unwrap();
        value.plan_digest = Some("cd".repeat(32));
        *run = serde_json::to_vec(&value).unwrap();
    });
    fails(&other_plan, Failure::Approval, "runs/run-1.json approval by anna (round 1): signs plan");
    let _ = f.agent;
}

/// A bundle that starts right after a signed event (as at a retention cut): the checkpoint of
/// that event, which is not in the file, must sign the hash the first event links to.
#[test]
fn a_checkpoint_of_the_event_before_the_bundle_must_match_the_first_link() {
    let bundle_with = |wrong: bool| {
        let mut f = fixture();
        let evidence = f.evidence.clone();
        let signed = |seq: u64, hash: String, at_ms: u64| {
            let mut c =
                SignedCheckpoint { generation: 1, seq, hash, at_ms, signature_hex: String::new() };
            c.signature_hex = dsops_proto::hex(&evidence.sign(&c.message()).to_bytes());
            c.to_detail()
        };
        let mut log = AuditLog::default();
        for i in 1..=4 {
            log.append(i, 1_000 + i, "alice", "run.requested", "prod/DB", "detail");
        }
        let cut = log.head();
        let hash = if wrong { "ff".repeat(32) } else { cut.hash.clone() };
        log.append(
            5,
            1_100,
            "node-1",
            CHECKPOINT_ACTION,
            "audit",
            &signed(cut.seq, hash, cut.at_ms),
        );
        log.append(6, 1_200, "alice", "run.completed", "prod/DB", "detail");
        let head = log.head();
        log.append(
            7,
            1_300,
            "node-1",
            CHECKPOINT_ACTION,
            "audit",
            &signed(head.seq, head.hash, head.at_ms),
        );
        f.input.events = log.events().into_iter().filter(|e| e.seq >= 5).collect();
        f.input.scope.first_seq = 5;
        f.input.scope.through_seq = 6;
        (write(&f.input, &f.evidence).unwrap(), f)
    };
    let (good, _) = bundle_with(false);
    let report = verify(&good, None);
    assert_eq!(report.failure(), None, "{:#?}", report.checks);
    let (bad, _) = bundle_with(true);
    fails(&bad, Failure::Checkpoint, "signs another hash for event 4");
}
