//! What each fuzz target does with its input, as plain functions: the targets in
//! `fuzz_targets/` call them under libFuzzer, and `tests/tests/t99_fuzz_regressions.rs` (which
//! includes this file) calls them on every input in `fuzz/regressions/` and `fuzz/corpus/` on
//! each test run, so a crash once found stays fixed. A function returns normally for every
//! input; a panic is a finding.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use dsops_config::config::{CatalogFiles, enforce, load_with};
use dsops_proto::domain::{self, SignedReceipt};
use dsops_proto::wire::{admin, agent, common};
use dsops_state::{ApplyContext, Request, State, apply, decode_snapshot, log_format};
use dsops_store::{FileStore, FileStoreOptions};
use ed25519_dalek::{Signer, SigningKey};
use prost::Message;

/// The targets, by name (the names of `fuzz_targets/*.rs` and of the corpus folders).
pub const TARGETS: [(&str, fn(&[u8])); 7] = [
    ("config", config),
    ("catalog", catalog),
    ("wire", wire),
    ("receipt", receipt),
    ("state_apply", state_apply),
    ("sealed_store", sealed_store),
    ("evidence", evidence),
];

/// `dsops.yaml`: the parser and the validator, as `dsops apply` reaches them on a node (the
/// catalog comes with the request, nothing is read from disk), then the enforced policies.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let files = BTreeMap::new();
    if let Ok(loaded) = load_with(text, "dsops.yaml", CatalogFiles::Given(&files)) {
        let _ = enforce::enforced(&loaded);
        let _ = loaded.resolved();
    }
}

const CATALOG_CONFIG: &str = "version: 1\nsecretStores:\n  local: { type: file }\nrotation:\n  dataDir: ./catalog\nservices:\n  svc:\n    type: fuzz\nenvs:\n  dev:\n    K:\n      from: { store: \"store://local/k#v\", service: \"svc://svc?kind=key\" }\n      rotation: { strategy: immediate }\n";

const CATALOG_FILES: [&str; 5] = [
    "service-types/fuzz.yaml",
    "service-instances/fuzz/one.yaml",
    "rotation-policies/fuzz.yaml",
    "principals/fuzz.yaml",
    "schemas/service-type.schema.json",
];

/// The catalog loader: one document of a `dataDir` (its folder chosen by the first byte)
/// under a configuration that uses it, loaded as `dsops apply` sends it.
pub fn catalog(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let path = CATALOG_FILES[usize::from(selector) % CATALOG_FILES.len()];
    let files = BTreeMap::from([(path.to_owned(), text.to_owned())]);
    if let Ok(loaded) = load_with(CATALOG_CONFIG, "dsops.yaml", CatalogFiles::Given(&files)) {
        let _ = loaded.resolved();
    }
}

fn convert<W: Message + Default, D: TryFrom<W>>(bytes: &[u8]) {
    if let Ok(message) = W::decode(bytes) {
        let _ = D::try_from(message);
    }
}

/// Every wire → domain conversion a node or an agent applies to what it receives: the first
/// byte picks the message, the rest is its protobuf encoding.
pub fn wire(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 24 {
        0 => convert::<agent::Hello, domain::Hello>(bytes),
        1 => convert::<agent::Heartbeat, domain::Heartbeat>(bytes),
        2 => convert::<agent::Capabilities, domain::Capabilities>(bytes),
        3 => convert::<agent::EnrollRequest, domain::EnrollRequest>(bytes),
        4 => convert::<agent::Job, domain::Job>(bytes),
        5 => convert::<common::ReceiptBody, domain::ReceiptBody>(bytes),
        6 => convert::<common::Receipt, domain::SignedReceipt>(bytes),
        7 => convert::<admin::ApplyConfigRequest, domain::ApplyConfig>(bytes),
        8 => convert::<admin::RotateRequest, domain::RotateRequest>(bytes),
        9 => convert::<admin::CreateJoinTokenRequest, domain::CreateJoinToken>(bytes),
        10 => convert::<admin::CreateAgentTokenRequest, domain::CreateAgentToken>(bytes),
        11 => convert::<admin::RemoveNodeRequest, domain::RemoveNode>(bytes),
        12 => convert::<admin::RevokeAgentRequest, domain::RevokeAgent>(bytes),
        13 => convert::<admin::GetRunsRequest, domain::GetRuns>(bytes),
        14 => convert::<admin::RotationStatusRequest, domain::RotationStatus>(bytes),
        15 => convert::<admin::RotationHistoryRequest, domain::RotationHistory>(bytes),
        16 => convert::<admin::RollbackRequest, domain::Rollback>(bytes),
        17 => convert::<admin::DecideRequest, domain::Decide>(bytes),
        18 => convert::<admin::RoleGrant, domain::RoleGrant>(bytes),
        19 => convert::<admin::GrantRoleRequest, domain::GrantRole>(bytes),
        20 => convert::<admin::InviteOperatorRequest, domain::InviteOperator>(bytes),
        21 => convert::<admin::EnrollOperatorRequest, domain::EnrollOperator>(bytes),
        22 => convert::<admin::RenewOperatorRequest, domain::RenewOperator>(bytes),
        _ => convert::<admin::RevokeOperatorRequest, domain::RevokeOperator>(bytes),
    }
}

/// A receipt as a node receives it: decoded, converted, and its signature checked against a
/// fixed agent key. With the first byte odd, the rest is signed as a body by that key first,
/// so the checks after the signature's are reached (and such a receipt must verify).
pub fn receipt(data: &[u8]) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key().to_bytes();
    let Some((&mode, rest)) = data.split_first() else { return };
    let signed_here = mode & 1 == 1;
    let receipt = if signed_here {
        common::Receipt { body: rest.to_vec(), signature: key.sign(rest).to_bytes().to_vec() }
    } else {
        match common::Receipt::decode(rest) {
            Ok(receipt) => receipt,
            Err(_) => return,
        }
    };
    if let Ok(signed) = SignedReceipt::try_from(receipt) {
        let verified = signed.verify(&public);
        assert!(!signed_here || verified.is_ok(), "a body signed by the key must verify");
    }
}

/// The replicated state machine: a snapshot as a node loads it (first byte 0), or log records
/// (one per line, framed or bare JSON) decoded and applied in order, as a node applies committed
/// entries: configurations, runs, receipts, approvals and every other command.
pub fn state_apply(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode == 0 {
        let _ = decode_snapshot(rest);
        return;
    }
    let mut state = State::default();
    for (index, line) in rest.split(|b| *b == b'\n').enumerate().take(64) {
        let Ok((_, body)) = log_format::unframe(line) else { continue };
        let Ok(request) = serde_json::from_slice::<Request>(body) else { continue };
        let _ = apply(&mut state, &request, ApplyContext { index: index as u64 + 1 });
    }
}

fn store() -> &'static FileStore {
    static STORE: OnceLock<(tempfile::TempDir, FileStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let options = FileStoreOptions {
                dir: dir.path().join("entries"),
                key_file: dir.path().join("store.key"),
            };
            let store = FileStore::open("fuzz", &options).expect("open the store");
            (dir, store)
        })
        .1
}

/// The sealed file store's reader, meeting a file it did not write: raw bytes (first byte
/// even), or bytes sealed with the store's own key (odd), so the parsing behind the envelope is
/// reached.
pub fn sealed_store(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let _ = store().read_planted("app/fuzz", rest, mode & 1 == 1);
}

/// The evidence-bundle verifier, on bytes an auditor was handed (`dsops evidence verify`).
pub fn evidence(data: &[u8]) {
    let _ = dsops_evidence::verify(data, None);
}
