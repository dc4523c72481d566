//! The leader's scheduler: starts a run for each secret when its `schedule` fires, inside its
//! maintenance windows, with nobody typing `dsops rotate`.
//!
//! Like the dispatcher it runs on every served node and acts only while the node leads, from
//! the replicated state alone. A scheduled run's id comes from the secret and the firing time,
//! so a new leader that sees the same firing names the same run, and the state machine's
//! request dedup starts it once.
//!
//! When a secret starts on its own:
//! - at the first firing after it last rotated;
//! - at the first firing after it came under dsops (the configuration version that added it),
//!   when it never rotated: adding a variable does not rotate it at once, the schedule says when
//!   (`dsops rotate --all` rotates such a secret now);
//! - never again for a firing its last run already failed at: after a run that rolled back, the
//!   next start is the first firing after that run ended, so a failing target is retried once
//!   per firing, not in a loop; a Quarantined secret waits for a person;
//! - a firing missed while no node led (a cluster restart over 03:00) starts at once if its
//!   window is still open, else at the next firing inside a window;
//! - a secret that needs approval starts like any other, its run waiting in `AwaitingApproval`;
//!   a run denied or expired unapproved counts like one that rolled back (next firing);
//! - a start that is refused waits for the next firing.
//!
//! The agenda is a queue ordered by start time, built when the configuration version changes.
//! A tick looks only at the entries whose time has come and re-reads those secrets (O(due));
//! an entry that is stale (the secret was rotated by hand meanwhile) is put back at its new
//! time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use crate::control::ControlPlane;
use crate::rotation::start::{self, Start};
use dsops_config::config::calendar::jitter_ms;
use dsops_config::config::{Loaded, ResolvedSecret};
use dsops_config::time::{Blackout, MaintenanceWindow, Schedule, next_start};
use dsops_state::{RunPhase, State, StoredConfig, secret_id};

/// How often the scheduler looks (schedules fire on the minute).
const TICK: Duration = Duration::from_secs(5);
/// When a secret with a run in flight is looked at again.
const RECHECK_ACTIVE: i64 = 60_000;
/// When a Quarantined secret is looked at again (it starts only after a person acted).
const RECHECK_QUARANTINED: i64 = 600_000;
/// How far ahead a firing inside the windows is looked for.
const HORIZON: TimeDelta = TimeDelta::days(366);

/// What the state says of one secret, as far as scheduling goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// When its last run completed.
    pub last_rotated_ms: Option<u64>,
    /// When its last run ended without completing (rolled back).
    pub last_failed_ms: Option<u64>,
    /// A run is in flight.
    pub active: bool,
    /// Its last run ended Quarantined.
    pub quarantined: bool,
    /// When the configuration that added it was stored.
    pub since_ms: Option<u64>,
    /// A certificate: when its issuer suggested renewing the current one (ACME renewal
    /// information), reported by the agent that issued it.
    pub renew_at_ms: Option<u64>,
}

impl Seen {
    /// Reads a secret's record from the state; `since_ms` comes from the configuration history.
    pub fn of(state: &State, id: &str, since_ms: Option<u64>) -> Seen {
        let Some(record) = state.secrets.get(id) else {
            return Seen { since_ms, ..Seen::default() };
        };
        // A run that rolled back, was denied or expired unapproved is retried at the next
        // firing after it ended, not at once.
        let last_failed_ms = match record.last_phase {
            Some(RunPhase::RolledBack | RunPhase::Denied | RunPhase::Expired) => record
                .last_run
                .as_ref()
                .and_then(|run| state.runs.get(run))
                .and_then(|run| run.finished_at_ms),
            _ => None,
        };
        Seen {
            last_rotated_ms: record.last_rotated_at_ms,
            last_failed_ms,
            active: record.active_run.is_some(),
            quarantined: record.last_phase == Some(RunPhase::Quarantined),
            since_ms,
            renew_at_ms: record.renew_at_ms,
        }
    }
}

fn utc(ms: u64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms.min(i64::MAX as u64) as i64).unwrap_or_default()
}

/// When a variable may start on its own: its schedule, its policy's windows, the blackouts
/// of its environment and its jitter.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The cron schedule.
    pub schedule: Schedule,
    /// Maintenance windows (none: any time).
    pub windows: Vec<MaintenanceWindow>,
    /// The blackouts that hold its environment.
    pub blackouts: Vec<Blackout>,
    /// Its start's offset after a firing, ms (`rotation.defaults.jitter`).
    pub jitter_ms: u64,
    /// A certificate: how long after it last rotated it renews (its lifetime less
    /// `renew_before`), ms. Its schedule then only says when it may start.
    pub renew_after_ms: Option<u64>,
}

impl Timing {
    /// When a certificate that rotated renews, ms since the epoch; `None` for other secrets and
    /// for a certificate never issued.
    pub fn renewal_ms(&self, seen: &Seen) -> Option<u64> {
        dsops_config::config::renewal::renewal_at_ms(
            self.renew_after_ms?,
            seen.last_rotated_ms,
            seen.renew_at_ms,
        )
    }

    /// The timing of a variable that rotates on a schedule, or a certificate (which renews a
    /// fraction of its lifetime before it expires, looked at hourly when it has no schedule).
    pub fn of(loaded: &Loaded, item: &ResolvedSecret<'_>) -> Option<Timing> {
        item.strategy.as_ref()?;
        let renew_after = dsops_config::config::renewal::renew_after(item);
        let schedule = match (&item.schedule, renew_after) {
            (Some((schedule, _)), _) => schedule.clone(),
            (None, Some(_)) => Schedule::parse("0 * * * *").ok()?,
            (None, None) => return None,
        };
        let (env, key) = (&item.secret.env, &item.secret.key);
        let rotation = &loaded.config.rotation;
        Some(Timing {
            renew_after_ms: renew_after.map(|d| d.as_secs().saturating_mul(1000)),
            schedule,
            windows: item.windows.to_vec(),
            blackouts: rotation.blackouts.iter().filter(|b| b.covers(env)).cloned().collect(),
            jitter_ms: jitter_ms(rotation.defaults.jitter, env, key),
        })
    }

    /// When the secret next starts on its own, ms since the epoch: the first firing of its
    /// schedule, inside its windows and outside every blackout, after it last rotated, after its
    /// last failed run and after it came under dsops — plus its jitter, unless that leaves its
    /// window or enters a blackout. A certificate that rotated starts no earlier than its
    /// renewal time: the one its issuer suggested (ACME renewal information) when it offered
    /// one, else its lifetime less `renew_before`. `None`: no firing within a year fits.
    pub fn next_start(&self, seen: &Seen) -> Option<i64> {
        let renewal = self.renewal_ms(seen);
        let base = [seen.last_rotated_ms, seen.last_failed_ms, seen.since_ms, renewal]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0);
        let blackouts: Vec<&Blackout> = self.blackouts.iter().collect();
        next_start(&self.schedule, &self.windows, &blackouts, self.jitter_ms, utc(base), HORIZON)
            .map(|t| t.timestamp_millis())
    }
}

/// When each variable of the current configuration came under dsops: the time the oldest
/// version of the unbroken run of stored versions that holds it up to the current one was
/// stored. (History is bounded; a variable older than the oldest kept version gets that
/// version's time, which can only make its first start earlier, never skip one.)
pub fn since_times(configs: &[StoredConfig]) -> HashMap<String, u64> {
    let mut since = HashMap::new();
    let Some(current) = configs.last() else { return since };
    for path in current.fingerprints.keys() {
        let Some((env, key)) = path.strip_prefix("envs.").and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        let mut at = current.applied_at_ms;
        for older in configs.iter().rev().skip(1) {
            if !older.fingerprints.contains_key(path) {
                break;
            }
            at = older.applied_at_ms;
        }
        since.insert(secret_id(env, key), at);
    }
    since
}

/// A secret whose time has come, and the firing it starts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSecret {
    /// `env/key`.
    pub id: String,
    /// The firing, ms since the epoch.
    pub firing_ms: i64,
}

/// The scheduler's queue for one configuration version.
#[derive(Debug, Default)]
pub struct Agenda {
    version: u64,
    /// (start time, secret), soonest first; one entry per secret.
    queue: BTreeSet<(i64, String)>,
    /// Each queued secret's start time, to move its entry.
    queued: HashMap<String, i64>,
    timings: HashMap<String, Timing>,
    since: HashMap<String, u64>,
}

impl Agenda {
    /// Builds the agenda of configuration `version` from every scheduled variable.
    pub fn build(version: u64, loaded: &Loaded, state: &State) -> Agenda {
        let mut agenda =
            Agenda { version, since: since_times(&state.configs), ..Agenda::default() };
        for item in loaded.resolved() {
            let Some(timing) = Timing::of(loaded, &item) else { continue };
            let id = secret_id(&item.secret.env, &item.secret.key);
            let seen = Seen::of(state, &id, agenda.since.get(&id).copied());
            if let Some(at) = timing.next_start(&seen) {
                agenda.put(id.clone(), at);
            }
            agenda.timings.insert(id, timing);
        }
        agenda
    }

    /// Queues `id` at `at`, replacing its entry if it has one.
    fn put(&mut self, id: String, at: i64) {
        if let Some(old) = self.queued.insert(id.clone(), at) {
            self.queue.remove(&(old, id.clone()));
        }
        self.queue.insert((at, id));
    }

    /// The configuration version it was built for.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether any entry's time has come.
    pub fn has_due(&self, now_ms: i64) -> bool {
        self.queue.first().is_some_and(|(at, _)| *at <= now_ms)
    }

    /// Takes the entries whose time has come, re-reads each secret and returns those to start
    /// now; the others go back at their new time. Every secret returned is queued again for a
    /// look once its run has had time to end.
    pub fn take_due(&mut self, now_ms: i64, state: &State) -> Vec<DueSecret> {
        let mut due = Vec::new();
        let mut later = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now_ms {
                break;
            }
            let (_, id) = self.queue.pop_first().expect("checked non-empty");
            self.queued.remove(&id);
            let Some(timing) = self.timings.get(&id) else { continue };
            let seen = Seen::of(state, &id, self.since.get(&id).copied());
            if seen.active {
                later.push((now_ms + RECHECK_ACTIVE, id));
            } else if seen.quarantined {
                later.push((now_ms + RECHECK_QUARANTINED, id));
            } else {
                match timing.next_start(&seen) {
                    None => {}
                    Some(at) if at > now_ms => later.push((at, id)),
                    Some(firing_ms) => {
                        later.push((now_ms + RECHECK_ACTIVE, id.clone()));
                        due.push(DueSecret { id, firing_ms });
                    }
                }
            }
        }
        for (at, id) in later {
            self.put(id, at);
        }
        due
    }

    /// Puts secrets that could not start at `now_ms` (refused: approval required, window closed
    /// after a late tick) at their next firing after now, instead of a look every minute.
    pub fn defer(&mut self, ids: &[String], now_ms: i64) {
        for id in ids {
            let Some(timing) = self.timings.get(id) else { continue };
            let seen = Seen { since_ms: Some(now_ms.max(0) as u64), ..Seen::default() };
            if let Some(at) = timing.next_start(&seen) {
                self.put(id.clone(), at);
            }
        }
    }

    /// Entries queued (for tests and logs).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Runs the scheduler until `shutdown`.
pub async fn run(control: ControlPlane, mut shutdown: watch::Receiver<bool>) {
    let mut agenda: Option<Agenda> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if !control.is_leader() {
            // Built afresh on becoming leader, from the state as it is then.
            agenda = None;
            continue;
        }
        if let Err(error) = tick(&control, &mut agenda).await {
            tracing::warn!(%error, "scheduler: tick failed; trying again");
        }
    }
}

async fn tick(control: &ControlPlane, agenda: &mut Option<Agenda>) -> Result<(), String> {
    let Some((version, loaded)) =
        start::applied_config(control).await.map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    if agenda.as_ref().is_none_or(|a| a.version() != version) {
        let built = control.read_local(|state| Agenda::build(version, &loaded, state)).await;
        tracing::debug!(version, scheduled = built.len(), "scheduler: agenda built");
        *agenda = Some(built);
    }
    let agenda = agenda.as_mut().expect("built above");
    let now = control.now_ms() as i64;
    if !agenda.has_due(now) {
        return Ok(());
    }
    let due = control.read_local(|state| agenda.take_due(now, state)).await;
    if due.is_empty() {
        return Ok(());
    }
    let refused = start(control, &loaded, version, resolve_due(&loaded, due)).await?;
    agenda.defer(&refused, now);
    Ok(())
}

/// Resolves the secrets whose time has come (each alone: O(due), however many secrets the
/// configuration has); a run carries its full spec. One that no longer resolves is left out.
pub fn resolve_due(loaded: &Loaded, due: Vec<DueSecret>) -> Vec<(DueSecret, ResolvedSecret<'_>)> {
    due.into_iter()
        .filter_map(|secret| {
            let (env, key) = secret.id.split_once('/')?;
            let item = loaded.resolve_secret(env, key)?;
            Some((secret, item))
        })
        .collect()
}

async fn start(
    control: &ControlPlane,
    loaded: &Arc<Loaded>,
    version: u64,
    due: Vec<(DueSecret, ResolvedSecret<'_>)>,
) -> Result<Vec<String>, String> {
    // One run id per secret and firing, whichever node leads when it fires; the reason names
    // the schedule, and one start covers the runs of one reason.
    let mut by_reason: HashMap<String, Vec<(ResolvedSecret<'_>, String)>> = HashMap::new();
    for (secret, item) in due {
        let schedule = item.schedule.as_ref().map(|(s, _)| s.as_str()).unwrap_or_default();
        let request_id = format!("schedule-{}", secret.firing_ms);
        let run_id = start::run_id(&request_id, &item.secret.env, &item.secret.key);
        by_reason.entry(format!("scheduled ({schedule})")).or_default().push((item, run_id));
    }
    let actor = format!("node-{} scheduler", control.node_id());
    let mut refused = Vec::new();
    for (reason, chosen) in by_reason {
        let start = Start {
            force: false,
            dry_run: false,
            single: false,
            restore_previous: false,
            reason,
            local: false,
            break_glass: false,
            wave: false,
        };
        let started = start::start_runs(control, &actor, loaded, version, chosen, &start)
            .await
            .map_err(|e| e.to_string())?;
        for run in &started.in_flight {
            let secret = run.secret.as_ref().map(|s| secret_id(&s.env, &s.key)).unwrap_or_default();
            tracing::info!(%secret, run_id = %run.run_id, "scheduler: a run is in flight; next firing");
            refused.push(secret);
        }
        for run in started.runs {
            let secret = run.secret.as_ref().map(|s| secret_id(&s.env, &s.key)).unwrap_or_default();
            if run.not_started() == dsops_proto::wire::admin::NotStarted::Skipped {
                tracing::warn!(%secret, why = %run.detail, "scheduler: not started; next firing");
                refused.push(secret);
            } else {
                tracing::info!(%secret, run_id = %run.run_id, "scheduler: run started");
            }
        }
    }
    Ok(refused)
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
