#![allow(clippy::unwrap_used)] // Test code: a failure is the report.

use std::path::Path;

use dsops_proto::domain::StepResult;
use dsops_state::{ReceiptRecord, Review, Run, RunPhase, RunSpec, SecretRecord, State, StepKind};

use crate::{Format, ReportRequest, Standard, build, render};

const DAY: u64 = 86_400_000;
/// 2026-12-01T00:00:00Z.
const NOW: u64 = 1_796_083_200_000;

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
policies:
  company:
    envs: [production]
    maxAge: 30d
envs:
  production:
    FRESH: { from: { store: \"store://local/a#v\" }, rotation: { strategy: random, config: { length: 32 } } }
    STALE: { from: { store: \"store://local/b#v\" }, rotation: { strategy: random, config: { length: 16, charset: numeric } } }
    NEVER: { from: { store: \"store://local/c#v\" }, rotation: { strategy: random } }
    STATIC: { from: { store: \"store://local/d#v\" } }
  dev:
    OTHER: { from: { store: \"store://local/e#v\" }, rotation: { strategy: random } }
";

fn spec() -> RunSpec {
    RunSpec {
        strategy: "random".into(),
        store_ref: "store://local/a#v".into(),
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
    }
}

fn receipt(step: StepKind, outcome: StepResult, at_ms: u64) -> ReceiptRecord {
    ReceiptRecord {
        step,
        checked_step: None,
        attempt: 1,
        outcome,
        agent_id: "agent-1".into(),
        fingerprint: None,
        detail: String::new(),
        at_ms,
        body_hex: "0a0b0c".into(),
        signature_hex: "00".into(),
    }
}

fn run(id: &str, key: &str, phase: RunPhase, at: u64, by: &str) -> Run {
    let verify =
        if phase == RunPhase::Completed { StepResult::Succeeded } else { StepResult::Retryable };
    Run {
        id: id.into(),
        env: "production".into(),
        key: key.into(),
        generation: 1,
        spec: spec(),
        restore_previous: false,
        phase,
        step: None,
        checked_step: None,
        attempt: 1,
        not_before_ms: 0,
        dispatched: None,
        new_fingerprint: None,
        receipts: vec![
            receipt(StepKind::Stage, StepResult::Succeeded, at + 1000),
            receipt(StepKind::Verify, verify, at + 2000),
        ],
        transitions: Vec::new(),
        requested_by: by.into(),
        reason: "=HYPERLINK(\"x\")".into(),
        last_error: String::new(),
        requested_at_ms: at,
        finished_at_ms: Some(at + 3000),
        approval: None,
        trace_parent: None,
        renew_at_ms: None,
    }
}

fn world() -> (dsops_config::config::Loaded, State) {
    let loaded = dsops_config::config::load_str(CONFIG, "dsops.yaml", Path::new(".")).unwrap();
    let mut state = State::default();
    let runs = [
        run("run-1", "FRESH", RunPhase::Completed, NOW - 10 * DAY, "alice"),
        run("run-2", "STALE", RunPhase::Completed, NOW - 40 * DAY, "node-1 scheduler"),
        run("run-3", "NEVER", RunPhase::RolledBack, NOW - 5 * DAY, "bob"),
    ];
    for r in runs {
        let record = state
            .secrets
            .entry(format!("production/{}", r.key))
            .or_insert_with(SecretRecord::default);
        record.history.push_back(r.id.clone());
        record.last_run = Some(r.id.clone());
        record.last_phase = Some(r.phase);
        if r.phase == RunPhase::Completed {
            record.last_rotated_at_ms = r.finished_at_ms;
        }
        state.runs.insert(r.id.clone(), r);
    }
    state.reviews.insert(
        "rv-7".into(),
        Review {
            id: "rv-7".into(),
            run_id: "run-1".into(),
            env: "production".into(),
            key: "FRESH".into(),
            opened_by: "alice".into(),
            reason: "outage".into(),
            opened_at_ms: NOW - 10 * DAY,
            deadline_ms: NOW - 9 * DAY,
            overdue_at_ms: Some(NOW - 9 * DAY),
            closed_by: None,
            closed_at_ms: None,
            note: String::new(),
        },
    );
    (loaded, state)
}

fn request(standard: Standard) -> ReportRequest {
    ReportRequest {
        standard,
        env: "production".into(),
        from_ms: NOW - 90 * DAY,
        to_ms: NOW,
        now_ms: NOW,
        sample: None,
    }
}

#[test]
fn population_rotations_exceptions_and_summary_follow_the_state() {
    let (loaded, state) = world();
    let report = build(&loaded, &state, &request(Standard::PciDss)).unwrap();
    let keys: Vec<&str> = report.population.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["FRESH", "NEVER", "STALE", "STATIC"], "only production, by key");
    let fresh = &report.population[0];
    assert_eq!(fresh.required_days, Some(30.0));
    assert_eq!(fresh.required_source, "policy:company");
    assert!((fresh.age_days.unwrap() - 10.0).abs() < 0.01);
    assert!(fresh.compliant);
    let stale = &report.population[2];
    assert!(!stale.compliant);
    assert!((stale.days_overdue - 10.0).abs() < 0.01, "{stale:?}");
    assert!(report.population[1].last_rotated.is_none());
    assert_eq!(report.population[3].strategy, "-");

    let kinds: Vec<(&str, &str)> =
        report.exceptions.iter().map(|e| (e.kind.as_str(), e.key.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("never_rotated", "NEVER"),
            ("overdue", "STALE"),
            ("never_rotated", "STATIC"),
            ("failed", "NEVER"),
            ("break_glass_unreviewed", "FRESH"),
        ]
    );
    let s = &report.summary;
    assert_eq!((s.secrets, s.with_requirement, s.compliant), (4, 4, 1), "{s:?}");
    assert_eq!((s.overdue, s.never_rotated, s.rotations, s.rotations_failed), (1, 2, 3, 1));
    assert_eq!(s.policy_max_days, Some(30.0));
    let counted: usize = s.age_buckets.iter().map(|b| b.count).sum();
    assert_eq!(counted, 4);
    assert_eq!(s.age_buckets.last().unwrap().count, 2, "NEVER and STATIC are in the never bar");
    assert_eq!(s.age_buckets[1].count, 1, "FRESH, 10 days");
    assert!(s.age_buckets[5].over_max && s.age_buckets[5].count == 1, "STALE, 40 days");

    let rotations: Vec<(&str, &str, bool)> = report
        .rotations
        .iter()
        .map(|r| (r.run.as_str(), r.verification.as_str(), r.break_glass))
        .collect();
    assert_eq!(
        rotations,
        [("run-2", "passed", false), ("run-1", "passed", true), ("run-3", "failed", false)]
    );
    let controls: Vec<(&str, &str)> =
        report.controls.iter().map(|c| (c.control.as_str(), c.status.as_str())).collect();
    // No user-class secret: 8.3.6 and 8.3.9 do not apply; 8.6.3 sees STALE overdue and its
    // digits-only value.
    assert_eq!(
        controls,
        [
            ("8.3.6", "not_applicable"),
            ("8.3.9", "not_applicable"),
            ("8.6.2", "met"),
            ("8.6.3", "exceptions")
        ]
    );
    assert!(
        report.controls[3].evidence.contains("1 of 4 system-class secrets"),
        "{:?}",
        report.controls[3]
    );
}

#[test]
fn a_period_before_the_rotations_sees_none_of_them() {
    let (loaded, state) = world();
    let mut early = request(Standard::Soc2);
    early.to_ms = NOW - 60 * DAY;
    let report = build(&loaded, &state, &early).unwrap();
    assert!(report.rotations.is_empty());
    assert!(report.population.iter().all(|r| r.last_rotated.is_none()), "ages are as of the end");
}

#[test]
fn bad_requests_are_refused_naming_what_is_wrong() {
    let (loaded, state) = world();
    let mut unknown = request(Standard::Hipaa);
    unknown.env = "prod".into();
    let error = build(&loaded, &state, &unknown).unwrap_err().to_string();
    assert_eq!(error, "unknown environment \"prod\"; the configuration has: dev, production");
    let mut reversed = request(Standard::Hipaa);
    reversed.from_ms = reversed.to_ms;
    assert!(build(&loaded, &state, &reversed).unwrap_err().to_string().contains("empty"));
    assert_eq!(
        Standard::parse("pci").unwrap_err(),
        "unknown standard \"pci\"; one of: pci-dss, soc2, hipaa, iso27001, nist-800-53"
    );
}

#[test]
fn a_sample_is_the_same_for_the_same_seed_and_summary_covers_everything() {
    let items: Vec<u32> = (0..1000).collect();
    let a = crate::build::pick(items.clone(), 25, 7, |i| i.to_string());
    let b = crate::build::pick(items.clone(), 25, 7, |i| i.to_string());
    let c = crate::build::pick(items, 25, 8, |i| i.to_string());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.windows(2).all(|w| w[0] < w[1]), "kept in their original order");

    let (loaded, state) = world();
    let mut sampled = request(Standard::Nist80053);
    sampled.sample = Some((2, 42));
    let report = build(&loaded, &state, &sampled).unwrap();
    assert_eq!((report.population.len(), report.rotations.len()), (2, 2));
    assert_eq!(report.summary.secrets, 4);
    let again = build(&loaded, &state, &sampled).unwrap();
    assert_eq!(report.population, again.population);
}

#[test]
fn csv_quotes_and_defuses_formulas() {
    let (loaded, state) = world();
    let report = build(&loaded, &state, &request(Standard::Iso27001)).unwrap();
    let rotations = String::from_utf8(render(&report, Format::Csv, "rotations").unwrap()).unwrap();
    assert!(rotations.starts_with("run,key,start,end,result,initiator,reason,"));
    assert!(rotations.contains(",\"'=HYPERLINK(\"\"x\"\")\","), "{rotations}");
    assert!(rotations.ends_with("\r\n"));
    assert!(render(&report, Format::Csv, "nope").unwrap_err().contains("one of: population"));
}

#[test]
fn html_is_self_contained_and_pdf_is_deterministic() {
    let (loaded, state) = world();
    let report = build(&loaded, &state, &request(Standard::PciDss)).unwrap();
    let html = String::from_utf8(render(&report, Format::Html, "").unwrap()).unwrap();
    assert!(html.contains("<svg"), "the chart is inline");
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
    assert!(html.contains("<td>STALE</td>"));
    let pdf = render(&report, Format::Pdf, "").unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(pdf, render(&report, Format::Pdf, "").unwrap(), "the same report, the same bytes");
}
