//! A compliance report over 10,000 secrets: how long each step takes, and the PDF's pages and
//! size. `cargo bench -p dsops-reports --bench report` (add `-- --pdf PATH` to keep the PDF).
//!
//! The state is built in memory: one environment, 10,000 `random` secrets under a 90-day
//! policy, each with up to three runs over the last 120 days (some failed, some never rotated),
//! so every table and every exception kind has rows.

#![allow(clippy::unwrap_used)] // A bench: a failure is the report.

use std::fmt::Write as _;
use std::time::Instant;

use dsops_proto::domain::StepResult;
use dsops_reports::{Format, ReportRequest, Standard, build, render};
use dsops_state::{ReceiptRecord, Run, RunPhase, RunSpec, SecretRecord, State, StepKind};

const SECRETS: usize = 10_000;
const DAY: u64 = 86_400_000;

fn main() {
    let keep = std::env::args().skip_while(|a| a != "--pdf").nth(1);
    let now = 1_796_083_200_000u64;
    let mut yaml = String::from(
        "version: 1\nsecretStores:\n  local: { type: file }\npolicies:\n  standard: { maxAge: 90d }\nenvs:\n  production:\n",
    );
    for i in 0..SECRETS {
        writeln!(
            yaml,
            "    KEY_{i:05}: {{ from: {{ store: \"store://local/s{i}#v\" }}, rotation: {{ strategy: random }} }}"
        )
        .unwrap();
    }
    let started = Instant::now();
    let loaded =
        dsops_config::config::load_str(&yaml, "dsops.yaml", std::path::Path::new(".")).unwrap();
    let load_ms = started.elapsed().as_millis();
    let mut state = State::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut runs = 0;
    for i in 0..SECRETS {
        let key = format!("KEY_{i:05}");
        let record =
            state.secrets.entry(format!("production/{key}")).or_insert_with(SecretRecord::default);
        let count = next() % 4; // 0 runs: never rotated
        for r in 0..count {
            let at = now - (next() % 120) * DAY - r * 1000;
            let phase = match next() % 50 {
                0 => RunPhase::RolledBack,
                1 => RunPhase::Quarantined,
                _ => RunPhase::Completed,
            };
            let id = format!("run-{i}-{r}");
            let receipt = |step, at_ms| ReceiptRecord {
                step,
                checked_step: None,
                attempt: 1,
                outcome: StepResult::Succeeded,
                agent_id: "agent-prod-1".into(),
                fingerprint: None,
                detail: String::new(),
                at_ms,
                body_hex: format!("{i:08x}{r:04x}"),
                signature_hex: "00".into(),
            };
            let run = Run {
                id: id.clone(),
                env: "production".into(),
                key: key.clone(),
                generation: r + 1,
                spec: RunSpec {
                    strategy: "random".into(),
                    store_ref: format!("store://local/s{i}#v"),
                    service_ref: None,
                    config_json: "{}".into(),
                    segment: "default".into(),
                    grace_ms: 0,
                    max_attempts: 3,
                    step_timeout_ms: 5_000,
                    config_version: 1,
                    value_format: None,
                    approval: None,
                    promotion: None,
                    rate_limit: None,
                },
                restore_previous: false,
                phase,
                step: None,
                checked_step: None,
                attempt: 1,
                not_before_ms: 0,
                dispatched: None,
                new_fingerprint: None,
                receipts: vec![
                    receipt(StepKind::Stage, at + 500),
                    receipt(StepKind::Verify, at + 900),
                ],
                transitions: Vec::new(),
                requested_by: if r % 2 == 0 { "node-1 scheduler".into() } else { "alice".into() },
                reason: "schedule".into(),
                last_error: String::new(),
                requested_at_ms: at,
                finished_at_ms: Some(at + 1000),
                approval: None,
                trace_parent: None,
                renew_at_ms: None,
            };
            if phase == RunPhase::Completed {
                record.last_rotated_at_ms = record.last_rotated_at_ms.max(Some(at + 1000));
            }
            record.last_phase = Some(phase);
            record.history.push_back(id.clone());
            state.runs.insert(id, run);
            runs += 1;
        }
    }
    let request = ReportRequest {
        standard: Standard::PciDss,
        env: "production".into(),
        from_ms: now - 90 * DAY,
        to_ms: now,
        now_ms: now,
        sample: None,
    };
    let started = Instant::now();
    let report = build(&loaded, &state, &request).unwrap();
    let build_ms = started.elapsed().as_secs_f64() * 1000.0;
    let timed = |format, table| {
        let started = Instant::now();
        let bytes = render(&report, format, table).unwrap();
        (bytes.len(), started.elapsed().as_secs_f64() * 1000.0)
    };
    let (json_bytes, json_ms) = timed(Format::Json, "");
    let (csv_bytes, csv_ms) = timed(Format::Csv, "population");
    let (html_bytes, html_ms) = timed(Format::Html, "");
    let started = Instant::now();
    let (pdf, pages) = dsops_reports::pdf::render_counted(&report).unwrap();
    let pdf_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "compliance report over {SECRETS} secrets, {runs} runs in the state (pci-dss, 90 days)"
    );
    println!("  configuration load (not part of a report): {load_ms} ms");
    println!(
        "  rows: population {}, rotations {}, exceptions {}",
        report.population.len(),
        report.rotations.len(),
        report.exceptions.len()
    );
    println!("  build (state -> report):  {build_ms:8.1} ms");
    println!("  json:                     {json_ms:8.1} ms  {:>6} KiB", json_bytes / 1024);
    println!("  csv (population):         {csv_ms:8.1} ms  {:>6} KiB", csv_bytes / 1024);
    println!("  html:                     {html_ms:8.1} ms  {:>6} KiB", html_bytes / 1024);
    println!(
        "  pdf:                      {pdf_ms:8.1} ms  {:>6} KiB, {pages} pages",
        pdf.len() / 1024
    );
    if let Some(path) = keep {
        std::fs::write(&path, &pdf).unwrap();
        println!("  pdf written to {path}");
    }
}
