//! `dsops evidence export|verify` and `dsops rotation audit` through the binary on the embedded
//! default: a rotation, an export of the day, an offline check that passes; a flipped byte fails
//! with the manifest's exit status naming the file; the environment's audit events as a table,
//! CSV and JSON; `-o FILE` on a command that prints is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // Each test binary uses part of the shared helpers.
mod common;

use std::io::{Read, Write};

use common::{dsops_in, stderr, stdout};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
envs:
  dev:
    API_KEY:
      from: { store: \"store://local/app/api#key\" }
      rotation: { strategy: random, config: { length: 32 } }
";

#[test]
fn export_then_verify_offline_and_catch_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dsops.yaml"), CONFIG).unwrap();
    let rotated = dsops_in(d, &["rotate", "--env", "dev", "--key", "API_KEY"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));

    let today = chrono::Utc::now().date_naive().to_string();
    let args = ["evidence", "export", "--env", "dev", "--from", &today, "--to", &today];
    let exported = dsops_in(d, &[&args[..], &["-o", "bundle.zip"]].concat());
    assert_eq!(exported.status.code(), Some(0), "{}", stderr(&exported));
    assert!(stderr(&exported).contains("it verifies"), "{}", stderr(&exported));

    let verified = dsops_in(d, &["evidence", "verify", "bundle.zip"]);
    assert_eq!(verified.status.code(), Some(0), "{}{}", stdout(&verified), stderr(&verified));
    let text = stdout(&verified);
    assert!(text.contains("root CA SHA-256 fingerprint: "), "{text}");
    assert!(text.contains("receipts verify with their agents' keys"), "{text}");
    assert!(text.trim_end().ends_with("verified"), "{text}");
    let json = dsops_in(d, &["evidence", "verify", "bundle.zip", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["verified"], true, "{value}");

    // Flip one byte of events.jsonl inside the zip (stored again, so the zip stays readable).
    let bytes = std::fs::read(d.join("bundle.zip")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    // The report tables ride along, covered by the signed manifest.
    let mut controls = String::new();
    archive.by_name("reports/dev/controls.csv").unwrap().read_to_string(&mut controls).unwrap();
    for standard in ["pci-dss", "soc2", "hipaa", "iso27001", "nist-800-53"] {
        assert!(controls.contains(&format!("\r\n{standard},")), "{standard}: {controls}");
    }
    let mut rotations = String::new();
    archive.by_name("reports/dev/rotations.csv").unwrap().read_to_string(&mut rotations).unwrap();
    assert!(rotations.contains(",API_KEY,") && rotations.contains(",completed,"), "{rotations}");
    let mut writer = zip::ZipWriter::new(std::fs::File::create(d.join("tampered.zip")).unwrap());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        let name = file.name().unwrap().into_owned();
        if name == "events.jsonl" {
            content[10] ^= 1;
        }
        writer.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(&content).unwrap();
    }
    writer.finish().unwrap();
    let caught = dsops_in(d, &["evidence", "verify", "tampered.zip"]);
    assert_eq!(caught.status.code(), Some(11), "{}", stdout(&caught));
    assert!(
        stdout(&caught).contains("events.jsonl: differs from the manifest"),
        "{}",
        stdout(&caught)
    );
    let missing = dsops_in(d, &["evidence", "verify", "nothing.zip"]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));

    // The environment's audit events, as a table, CSV and JSON, on the embedded default.
    let table = dsops_in(d, &["rotation", "audit", "--env", "dev", "--days", "1"]);
    assert_eq!(table.status.code(), Some(0), "{}", stderr(&table));
    assert!(stdout(&table).contains("run.completed"), "{}", stdout(&table));
    let csv = dsops_in(d, &["rotation", "audit", "--env", "dev", "--export", "csv"]);
    let csv = stdout(&csv);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("seq,at,actor,action,subject,detail,hash"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.iter().any(|r| r.contains(",run.requested,dev/API_KEY,")), "{csv}");
    assert!(rows.iter().all(|r| r.contains("dev/")), "only dev's secrets: {csv}");
    let json = dsops_in(d, &["rotation", "audit", "--env", "dev", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["verified"], true, "{value}");
    assert_eq!(value["events"].as_array().unwrap().len(), rows.len());
    let all = dsops_in(d, &["audit", "list", "--action", "audit.checkpoint"]);
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    assert!(stdout(&all).contains("audit.checkpoint"), "{}", stdout(&all));

    // -o FILE only where a command writes one.
    let printed = dsops_in(d, &["rotation", "status", "--env", "dev", "-o", "status.txt"]);
    assert_eq!(printed.status.code(), Some(2));
    assert!(stderr(&printed).contains("this command prints its result"), "{}", stderr(&printed));
    let no_file = dsops_in(d, &args);
    assert_eq!(no_file.status.code(), Some(2));
    assert!(stderr(&no_file).contains("-o FILE"), "{}", stderr(&no_file));
}

#[test]
fn a_new_evidence_key_generation_signs_on_and_the_old_checkpoints_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dsops.yaml"), CONFIG).unwrap();
    let rotated = dsops_in(d, &["rotate", "--env", "dev", "--key", "API_KEY"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));

    let new_key = dsops_in(d, &["evidence", "key", "rotate", "-o", "json"]);
    assert_eq!(new_key.status.code(), Some(0), "{}", stderr(&new_key));
    let key: serde_json::Value = serde_json::from_slice(&new_key.stdout).unwrap();
    assert_eq!(key["previous_generation"], 1, "{key}");
    assert_eq!(key["generation"], 2, "{key}");
    let table = dsops_in(d, &["evidence", "key", "rotate"]);
    assert!(
        stdout(&table).contains("evidence key generation 3 signs from audit event"),
        "{}",
        stdout(&table)
    );

    // A second rotation after the new keys: the period's bundle holds checkpoints of the three
    // generations, each verified with its own key.
    let rotated = dsops_in(d, &["rotate", "--env", "dev", "--key", "API_KEY"]);
    assert_eq!(rotated.status.code(), Some(0), "{}", stderr(&rotated));
    let today = chrono::Utc::now().date_naive().to_string();
    let args = ["evidence", "export", "--env", "dev", "--from", &today, "--to", &today];
    let exported = dsops_in(d, &[&args[..], &["-o", "bundle.zip"]].concat());
    assert_eq!(exported.status.code(), Some(0), "{}", stderr(&exported));
    let bytes = std::fs::read(d.join("bundle.zip")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut events = String::new();
    archive.by_name("events.jsonl").unwrap().read_to_string(&mut events).unwrap();
    for generation in 1..=3 {
        assert!(
            events.lines().any(|l| l.contains("audit.checkpoint")
                && l.contains(&format!("generation={generation} "))),
            "no checkpoint of generation {generation}"
        );
    }
    let verified = dsops_in(d, &["evidence", "verify", "bundle.zip"]);
    assert_eq!(verified.status.code(), Some(0), "{}{}", stdout(&verified), stderr(&verified));

    // The help says what becomes of the earlier generations.
    let help = dsops_in(d, &["evidence", "key", "rotate", "--help"]);
    assert!(stdout(&help).contains("still verifies"), "{}", stdout(&help));
}
