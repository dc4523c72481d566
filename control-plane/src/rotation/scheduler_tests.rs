use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;
use dsops_config::config::{CatalogFiles, load_with};
use dsops_config::time;
use dsops_state::SecretRecord;

const YAML: &str = r#"version: 1
secretStores:
  local: { type: file }
envs:
  dev:
    WEEKLY:
      from: { store: "store://local/a#key" }
      rotation: { strategy: random, schedule: "0 3 * * 0", config: { length: 32 } }
    MANUAL:
      from: { store: "store://local/b#key" }
      rotation: { strategy: random, config: { length: 32 } }
"#;

fn loaded() -> Loaded {
    let files = BTreeMap::new();
    load_with(YAML, "dsops.yaml", CatalogFiles::Given(&files)).expect("valid configuration")
}

/// Milliseconds at a UTC wall-clock time in the week of 2026-11-28 (a Saturday).
fn at(day: u32, hour: u32, minute: u32) -> i64 {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap().timestamp_millis()
}

fn stored(version: u64, applied_at_ms: i64, paths: &[&str]) -> StoredConfig {
    StoredConfig {
        version,
        config_yaml: String::new(),
        config_path: "dsops.yaml".into(),
        catalog_files: BTreeMap::new(),
        fingerprints: paths.iter().map(|p| ((*p).to_owned(), "f".to_owned())).collect(),
        changes: Vec::new(),
        applied_at_ms: applied_at_ms as u64,
        applied_by: "test".into(),
        index: version,
    }
}

/// A state whose configuration (both variables) was stored on Saturday at noon.
fn state() -> State {
    let mut state = State::default();
    state.configs.push(stored(1, at(28, 12, 0), &["envs.dev.WEEKLY", "envs.dev.MANUAL"]));
    state
}

fn record(state: &mut State) -> &mut SecretRecord {
    state.secrets.entry(secret_id("dev", "WEEKLY")).or_default()
}

#[test]
fn a_new_variable_waits_for_its_first_firing() {
    let loaded = loaded();
    let state = state();
    let mut agenda = Agenda::build(1, &loaded, &state);
    // Only the scheduled variable is on the agenda.
    assert_eq!(agenda.len(), 1);
    // Added on Saturday at noon: not started at once, nor before Sunday 03:00.
    assert!(!agenda.has_due(at(28, 12, 0)));
    assert!(agenda.take_due(at(29, 2, 59), &state).is_empty());
    let due = agenda.take_due(at(29, 3, 0), &state);
    assert_eq!(due, vec![DueSecret { id: "dev/WEEKLY".into(), firing_ms: at(29, 3, 0) }]);
}

#[test]
fn a_started_secret_is_looked_at_again_until_its_run_ends_then_waits_a_week() {
    let loaded = loaded();
    let mut state = state();
    let mut agenda = Agenda::build(1, &loaded, &state);
    assert_eq!(agenda.take_due(at(29, 3, 0), &state).len(), 1);
    // The run is in flight a minute later: nothing starts.
    record(&mut state).active_run = Some("run-1".into());
    assert!(agenda.take_due(at(29, 3, 1), &state).is_empty());
    // It completed; the next start is the Sunday after.
    let record = record(&mut state);
    record.active_run = None;
    record.last_phase = Some(RunPhase::Completed);
    record.last_rotated_at_ms = Some(at(29, 3, 1) as u64 + 30_000);
    assert!(agenda.take_due(at(29, 3, 2), &state).is_empty());
    assert!(!agenda.has_due(at(29, 3, 2) + 6 * 86_400_000));
    let next_week = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap().timestamp_millis();
    assert_eq!(agenda.take_due(next_week, &state).len(), 1);
}

#[test]
fn a_secret_rotated_by_hand_before_the_tick_is_not_started_again() {
    let loaded = loaded();
    let mut state = state();
    let mut agenda = Agenda::build(1, &loaded, &state);
    // Someone ran `dsops rotate` right after the firing, before the scheduler looked.
    record(&mut state).last_rotated_at_ms = Some(at(29, 3, 0) as u64 + 5_000);
    assert!(agenda.take_due(at(29, 3, 0) + 10_000, &state).is_empty());
    assert_eq!(agenda.len(), 1, "still on the agenda, for next week");
}

#[test]
fn a_quarantined_secret_waits_for_a_person() {
    let loaded = loaded();
    let mut state = state();
    record(&mut state).last_phase = Some(RunPhase::Quarantined);
    let mut agenda = Agenda::build(1, &loaded, &state);
    for minute in 0..30 {
        assert!(agenda.take_due(at(29, 3, minute), &state).is_empty());
    }
    assert!(agenda.take_due(at(30, 3, 0), &state).is_empty());
    // A person rotated it by hand and it completed: the schedule takes over again.
    let record = record(&mut state);
    record.last_phase = Some(RunPhase::Completed);
    record.last_rotated_at_ms = Some(at(30, 9, 0) as u64);
    let next = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap().timestamp_millis();
    assert!(agenda.take_due(next - 1, &state).is_empty());
    assert_eq!(agenda.take_due(next + 600_000, &state).len(), 1);
}

#[test]
fn a_failed_run_is_retried_at_the_next_firing_not_in_a_loop() {
    let timing = Timing {
        schedule: time::Schedule::parse("0 3 * * 0").unwrap(),
        windows: vec![],
        blackouts: vec![],
        jitter_ms: 0,
        renew_after_ms: None,
    };
    let failed_after_firing =
        Seen { last_failed_ms: Some(at(29, 3, 4) as u64), since_ms: Some(0), ..Seen::default() };
    let next = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap().timestamp_millis();
    assert_eq!(timing.next_start(&failed_after_firing), Some(next));
    // A failure older than the last rotation does not hold the schedule back.
    let rotated_since = Seen { last_rotated_ms: Some(at(29, 3, 10) as u64), ..failed_after_firing };
    assert_eq!(timing.next_start(&rotated_since), Some(next));
}

#[test]
fn a_firing_missed_while_no_node_led_starts_at_once() {
    let loaded = loaded();
    let state = state();
    let mut agenda = Agenda::build(1, &loaded, &state);
    // The cluster was down over Sunday 03:00 and leads again on Monday.
    let due = agenda.take_due(at(30, 9, 0), &state);
    assert_eq!(due, vec![DueSecret { id: "dev/WEEKLY".into(), firing_ms: at(29, 3, 0) }]);
}

#[test]
fn firings_outside_the_maintenance_windows_are_skipped() {
    // Hourly, but only inside a Saturday 02:00-06:00 UTC window.
    let window = time::MaintenanceWindow::new(
        time::Schedule::parse("0 2 * * 6").unwrap(),
        time::Duration::parse("4h").unwrap(),
        Some("UTC"),
    )
    .unwrap();
    let timing = Timing {
        schedule: time::Schedule::parse("0 * * * *").unwrap(),
        windows: vec![window],
        blackouts: vec![],
        jitter_ms: 0,
        renew_after_ms: None,
    };
    let seen = Seen { last_rotated_ms: Some(at(28, 12, 0) as u64), ..Seen::default() };
    let next_saturday = Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap().timestamp_millis();
    assert_eq!(timing.next_start(&seen), Some(next_saturday));
}

#[test]
fn a_variable_came_under_dsops_with_the_version_that_last_added_it() {
    let configs = vec![
        stored(1, 1_000, &["envs.dev.X"]),
        stored(2, 2_000, &["envs.dev.X", "envs.dev.Y", "services.pg"]),
        stored(3, 3_000, &["envs.dev.Y"]),
        stored(4, 4_000, &["envs.dev.X", "envs.dev.Y"]),
    ];
    let since = since_times(&configs);
    assert_eq!(since.get("dev/X"), Some(&4_000), "removed in version 3, added again in 4");
    assert_eq!(since.get("dev/Y"), Some(&2_000));
    assert_eq!(since.len(), 2, "only variables: {since:?}");
    assert!(since_times(&[]).is_empty());
}

#[test]
fn a_secret_refused_at_its_firing_waits_for_the_next_one() {
    let loaded = loaded();
    let state = state();
    let mut agenda = Agenda::build(1, &loaded, &state);
    let now = at(29, 3, 0);
    assert_eq!(agenda.take_due(now, &state).len(), 1);
    // The start was refused (say, the policy wants an approval): no look every minute.
    agenda.defer(&["dev/WEEKLY".to_owned()], now);
    assert_eq!(agenda.len(), 1);
    let next_week = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap().timestamp_millis();
    assert!(!agenda.has_due(next_week - 1));
    assert_eq!(agenda.take_due(next_week, &state).len(), 1);
}

#[test]
fn a_blackout_skips_firings_and_jitter_spreads_starts_but_never_into_one() {
    // Daily at 03:00; a freeze from Sunday 2026-11-29 00:00 to Tuesday 2026-12-01 00:00.
    let freeze = time::Blackout {
        name: "freeze".into(),
        time: time::BlackoutTime::Fixed {
            from: Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap(),
            to: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        },
        envs: vec![],
    };
    let daily = |blackouts: Vec<time::Blackout>, jitter_ms: u64| Timing {
        renew_after_ms: None,
        schedule: time::Schedule::parse("0 3 * * *").unwrap(),
        windows: vec![],
        blackouts,
        jitter_ms,
    };
    let seen = Seen { last_rotated_ms: Some(at(28, 12, 0) as u64), ..Seen::default() };
    let tuesday = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap().timestamp_millis();
    assert_eq!(daily(vec![], 0).next_start(&seen), Some(at(29, 3, 0)));
    assert_eq!(
        daily(vec![freeze.clone()], 0).next_start(&seen),
        Some(tuesday),
        "Sunday and Monday are frozen"
    );
    assert_eq!(daily(vec![freeze.clone()], 90_000).next_start(&seen), Some(tuesday + 90_000));
    // A jitter that would run into a blackout is dropped: the firing itself is outside it.
    let late = time::Blackout {
        name: "late".into(),
        time: time::BlackoutTime::Fixed {
            from: Utc.with_ymd_and_hms(2026, 11, 29, 3, 1, 0).unwrap(),
            to: Utc.with_ymd_and_hms(2026, 11, 29, 5, 0, 0).unwrap(),
        },
        envs: vec![],
    };
    assert_eq!(daily(vec![late], 600_000).next_start(&seen), Some(at(29, 3, 0)));
}

#[test]
fn the_agenda_applies_the_configurations_jitter_and_blackouts() {
    let yaml = YAML.replace(
        "envs:\n",
        "rotation:\n  defaults: { jitter: 30m }\n  blackouts:\n    - { name: sundays, cron: \"0 0 * * 0\", duration: 1d }\nenvs:\n",
    );
    let files = BTreeMap::new();
    let loaded = load_with(&yaml, "dsops.yaml", CatalogFiles::Given(&files)).expect("valid");
    let item = loaded.resolved().into_iter().find(|i| i.secret.key == "WEEKLY").unwrap();
    let timing = Timing::of(&loaded, &item).unwrap();
    let offset = dsops_config::config::calendar::jitter_ms(
        loaded.config.rotation.defaults.jitter,
        "dev",
        "WEEKLY",
    );
    assert_eq!(timing.jitter_ms, offset);
    assert!(offset > 0 && offset < 1_800_000);
    // WEEKLY fires on Sundays at 03:00, all inside the Sunday blackout: no start within a year.
    let seen = Seen { last_rotated_ms: Some(at(28, 12, 0) as u64), ..Seen::default() };
    assert_eq!(timing.next_start(&seen), None);
}

#[test]
fn a_certificate_renews_a_fraction_of_its_lifetime_before_expiry_not_at_every_firing() {
    // Checked hourly; a 30-day certificate with renew_before 33% renews 20.1 days after issue.
    let renew_after_ms = 30 * 86_400_000 - 30 * 86_400_000 * 33 / 100;
    let timing = Timing {
        schedule: time::Schedule::parse("0 * * * *").unwrap(),
        windows: vec![],
        blackouts: vec![],
        jitter_ms: 0,
        renew_after_ms: Some(renew_after_ms),
    };
    let issued = at(1, 10, 30) as u64;
    let seen = Seen { last_rotated_ms: Some(issued), since_ms: Some(0), ..Seen::default() };
    let next = timing.next_start(&seen).unwrap();
    assert!(next as u64 >= issued + renew_after_ms, "not before the renewal time");
    assert!(
        next as u64 <= issued + renew_after_ms + 3_600_000,
        "at the first hourly firing after it"
    );
    // Never rotated: the first firing issues it.
    let new = Seen { since_ms: Some(issued), ..Seen::default() };
    assert!(timing.next_start(&new).unwrap() as u64 <= issued + 3_600_000);
    // The issuer suggested a time (ACME renewal information): that wins, earlier or later.
    for suggested in [issued + 5 * 86_400_000, issued + 25 * 86_400_000] {
        let seen = Seen { renew_at_ms: Some(suggested), ..seen };
        let next = timing.next_start(&seen).unwrap() as u64;
        assert!((suggested..=suggested + 3_600_000).contains(&next), "{next} vs {suggested}");
    }
    // A variable that is not a certificate ignores it.
    let plain = Timing { renew_after_ms: None, ..timing };
    let seen = Seen { renew_at_ms: Some(issued + 25 * 86_400_000), ..seen };
    assert!(plain.next_start(&seen).unwrap() as u64 <= issued + 3_600_000);
}

#[test]
fn only_the_due_secrets_are_resolved_and_a_vanished_one_is_left_out() {
    let loaded = loaded();
    let due = vec![
        DueSecret { id: "dev/WEEKLY".into(), firing_ms: at(29, 3, 0) },
        DueSecret { id: "dev/GONE".into(), firing_ms: at(29, 3, 0) },
        DueSecret { id: "no-slash".into(), firing_ms: at(29, 3, 0) },
    ];
    let resolved = resolve_due(&loaded, due);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].0.id, "dev/WEEKLY");
    assert_eq!(
        (resolved[0].1.secret.env.as_str(), resolved[0].1.secret.key.as_str()),
        ("dev", "WEEKLY")
    );
    assert!(resolved[0].1.schedule.is_some(), "resolved with its schedule");
}
