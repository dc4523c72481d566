//! The leader's reminders: people hear when a secret is past due and, ahead of time, when it
//! is about to be (`beforeExpiry.advance` of its policy). Like the other loops it runs on every
//! served node and acts only while the node leads; the state machine keeps what was sent
//! (`Command::Remind`, judged in log time), so a new leader neither repeats nor skips one.
//!
//! | reminder | when | audit action | told to |
//! |---|---|---|---|
//! | overdue | its due time has passed by a quarter of its schedule's period (at most an hour) without a completed rotation; again every 24 h while it stays so | `secret.overdue` | `onFailure` |
//! | expiring | `beforeExpiry.advance` before its due time | `secret.expiring` | `beforeExpiry.targets` |
//!
//! A secret's due time is the first firing of its schedule after its last completed rotation
//! (what `dsops rotation status` shows as NEXT DUE). Secrets dsops never rotated and secrets
//! without a schedule get no reminders.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::control::{ControlPlane, WriteError};
use crate::rotation::start;
use dsops_config::config::{Loaded, ResolvedSecret};
use dsops_state::{Command, OVERDUE_REPEAT_MS, Reminder, RunPhase, SecretRecord, secret_id};

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(30);
/// How long past due a secret is before people hear, at most (less for short periods).
pub const OVERDUE_GRACE_MS: u64 = 3_600_000;

/// Runs the reminders until `shutdown`.
pub async fn run(control: ControlPlane, shutdown: watch::Receiver<bool>) {
    super::while_leading(control, shutdown, TICK, "reminders", |control| async move {
        tick(&control).await.map(|_| ())
    })
    .await;
}

/// A reminder the leader proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The request id: the same for every leader that plans the same reminder.
    pub request_id: String,
    /// The command.
    pub command: Command,
}

/// What the state says of a secret, as far as reminders go.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its record.
    pub record: SecretRecord,
    /// The phase of its run in flight.
    pub active: Option<RunPhase>,
}

fn ms(at: DateTime<Utc>) -> u64 {
    at.timestamp_millis().max(0) as u64
}

fn time(at_ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms as i64)
        .map_or_else(|| at_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// `3d 4h`, `5h 2m`, `12m`, `40s`.
pub fn span(ms: u64) -> String {
    let seconds = ms / 1000;
    let (d, h, m) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The reminders due for one secret at `now_ms`.
pub fn plan(item: &ResolvedSecret<'_>, seen: &Seen, now_ms: u64) -> Vec<Planned> {
    let mut planned = Vec::new();
    let (Some(_), Some((schedule, _)), Some(last)) =
        (item.strategy, item.schedule.as_ref(), seen.record.last_rotated_at_ms)
    else {
        return planned;
    };
    let Some(due) = DateTime::<Utc>::from_timestamp_millis(last as i64)
        .and_then(|last| schedule.next_utc(last))
    else {
        return planned;
    };
    let (env, key) = (item.secret.env.as_str(), item.secret.key.as_str());
    let id = secret_id(env, key);
    let due_ms = ms(due);
    let command = |reminder, remind_at_ms, detail| Command::Remind {
        env: env.to_owned(),
        key: key.to_owned(),
        reminder,
        last_rotated_ms: Some(last),
        due_ms,
        remind_at_ms,
        detail,
    };
    let period_ms = schedule.next_utc(due).map_or(OVERDUE_GRACE_MS * 4, |next| ms(next) - due_ms);
    let overdue_at = due_ms + (period_ms / 4).min(OVERDUE_GRACE_MS);
    if now_ms >= overdue_at {
        let previous = seen.record.overdue_reminded.filter(|m| m.due_ms == due_ms);
        if previous.is_none_or(|m| now_ms >= m.at_ms + OVERDUE_REPEAT_MS) {
            let doing = match seen.active {
                Some(RunPhase::AwaitingApproval) => "; its run awaits approval".to_owned(),
                Some(phase) => format!("; a run is in flight ({phase})"),
                None => String::new(),
            };
            let detail = format!(
                "{id} was due for rotation at {} and is {} overdue (last rotated {}){doing}",
                time(due_ms),
                span(now_ms - due_ms),
                time(last)
            );
            planned.push(Planned {
                request_id: format!(
                    "remind-overdue-{id}-{due_ms}-{}",
                    previous.map_or(0, |m| m.at_ms)
                ),
                command: command(Reminder::Overdue, overdue_at, detail),
            });
        }
    }
    let advance = item
        .policy
        .and_then(|(_, p)| p.spec.notifications.as_ref()?.before_expiry.as_ref())
        .and_then(|b| dsops_config::time::Duration::parse(&b.advance).ok());
    if let Some(advance) = advance {
        let remind_at = due_ms.saturating_sub(advance.as_secs() * 1000);
        let sent = seen.record.expiry_reminded.is_some_and(|m| m.due_ms == due_ms);
        if now_ms >= remind_at && now_ms < due_ms && !sent {
            let detail = format!(
                "{id} is due for rotation at {} (in {}; last rotated {})",
                time(due_ms),
                span(due_ms - now_ms),
                time(last)
            );
            planned.push(Planned {
                request_id: format!("remind-expiring-{id}-{due_ms}"),
                command: command(Reminder::Expiring, remind_at, detail),
            });
        }
    }
    planned
}

/// Proposes the reminders due now. Returns how many were recorded.
pub async fn tick(control: &ControlPlane) -> Result<usize, String> {
    let Some((_, loaded)) = start::applied_config(control).await.map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    let now = control.now_ms();
    let planned = control.read_local(|state| due(&loaded, state, now)).await;
    let actor = format!("node-{} reminders", control.node_id());
    let mut recorded = 0;
    for reminder in planned {
        match control.write(&actor, &reminder.request_id, reminder.command).await {
            Ok(_) => recorded += 1,
            // Rotated meanwhile, not yet due in log time, or sent already: nothing to do.
            Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(recorded)
}

/// The reminders due under `loaded` in `state`.
fn due(loaded: &Loaded, state: &dsops_state::State, now: u64) -> Vec<Planned> {
    let mut planned = Vec::new();
    for item in loaded.resolved() {
        let id = secret_id(&item.secret.env, &item.secret.key);
        let Some(record) = state.secrets.get(&id) else { continue };
        let active = record.active_run.as_ref().and_then(|r| state.runs.get(r)).map(|r| r.phase);
        let seen = Seen { record: record.clone(), active };
        planned.extend(plan(&item, &seen, now));
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsops_state::ReminderMark;

    const HOUR: u64 = 3_600_000;

    fn loaded() -> Loaded {
        let dir = tempfile::tempdir().expect("tempdir");
        let policies = dir.path().join("rotation-policies");
        std::fs::create_dir_all(&policies).expect("mkdir");
        std::fs::write(
            policies.join("daily.yaml"),
            "apiVersion: dsops.io/v1
kind: RotationPolicy
metadata: { name: daily }
spec:
  strategy: random
  schedule: \"0 3 * * *\"
  notifications:
    onFailure: [oncall]
    beforeExpiry: { targets: [team], advance: 2h }
",
        )
        .expect("write policy");
        let yaml = format!(
            "version: 1
secretStores:
  local: {{ type: file }}
rotation:
  dataDir: {}
envs:
  prod:
    K:
      from: {{ store: \"store://local/app#k\" }}
      rotation: {{ policy: daily, config: {{ length: 16 }} }}
    MANUAL:
      from: {{ store: \"store://local/app#m\" }}
      rotation: {{ strategy: random, config: {{ length: 16 }} }}
",
            dir.path().display()
        );
        let loaded = dsops_config::config::load_str(&yaml, "dsops.yaml", dir.path());
        loaded.expect("valid")
    }

    fn at(text: &str) -> u64 {
        ms(DateTime::parse_from_rfc3339(text).expect("time").with_timezone(&Utc))
    }

    fn kinds(planned: &[Planned]) -> Vec<Reminder> {
        planned
            .iter()
            .map(|p| match &p.command {
                Command::Remind { reminder, .. } => *reminder,
                other => panic!("not a reminder: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn reminders_come_ahead_of_the_due_time_then_once_it_is_overdue_then_daily() {
        let loaded = loaded();
        let items = loaded.resolved();
        let item = items.iter().find(|i| i.secret.key == "K").expect("K");
        let manual = items.iter().find(|i| i.secret.key == "MANUAL").expect("MANUAL");
        let last = at("2026-01-01T03:00:10Z");
        let due = at("2026-01-02T03:00:00Z");
        let mut seen = Seen {
            record: SecretRecord { last_rotated_at_ms: Some(last), ..SecretRecord::default() },
            active: None,
        };
        // Quiet until two hours ahead.
        assert!(plan(item, &seen, due - 2 * HOUR - 1).is_empty());
        let ahead = plan(item, &seen, due - HOUR);
        assert_eq!(kinds(&ahead), [Reminder::Expiring]);
        let Command::Remind { due_ms, remind_at_ms, detail, .. } = &ahead[0].command else {
            unreachable!()
        };
        assert_eq!((*due_ms, *remind_at_ms), (due, due - 2 * HOUR));
        assert!(detail.contains("prod/K is due for rotation at 2026-01-02 03:00 UTC (in 1h 0m"));
        seen.record.expiry_reminded = Some(ReminderMark { due_ms: due, at_ms: due - HOUR });
        assert!(plan(item, &seen, due - 1).is_empty(), "once per due time");
        // Past due, within the grace (an hour for a daily schedule): nothing yet.
        assert!(plan(item, &seen, due + HOUR - 1).is_empty());
        seen.active = Some(RunPhase::AwaitingApproval);
        let late = plan(item, &seen, due + 5 * HOUR);
        assert_eq!(kinds(&late), [Reminder::Overdue]);
        let Command::Remind { remind_at_ms, detail, .. } = &late[0].command else { unreachable!() };
        assert_eq!(*remind_at_ms, due + HOUR);
        assert!(detail.contains("is 5h 0m overdue"), "{detail}");
        assert!(detail.contains("its run awaits approval"), "{detail}");
        seen.record.overdue_reminded = Some(ReminderMark { due_ms: due, at_ms: due + 5 * HOUR });
        assert!(plan(item, &seen, due + 20 * HOUR).is_empty(), "not again the same day");
        let again = plan(item, &seen, due + 29 * HOUR);
        assert_eq!(kinds(&again), [Reminder::Overdue]);
        assert_ne!(again[0].request_id, late[0].request_id, "a repeat is a new request");
        // No schedule, or never rotated: no reminders.
        assert!(plan(manual, &seen, due + 29 * HOUR).is_empty());
        let never = Seen::default();
        assert!(plan(item, &never, due + 29 * HOUR).is_empty());
    }

    #[test]
    fn spans_read_like_the_cli() {
        assert_eq!(span(40_000), "40s");
        assert_eq!(span(12 * 60_000), "12m");
        assert_eq!(span(5 * HOUR + 2 * 60_000), "5h 2m");
        assert_eq!(span(76 * HOUR), "3d 4h");
    }
}
