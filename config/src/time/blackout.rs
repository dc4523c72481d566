//! Blackouts: times no rotation starts on its own or by an operator's `--force` — fixed ranges
//! (a change freeze) and recurring ones (month-end close, market hours). Only break-glass
//! rotates during one. A blackout beats a maintenance window.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::MaintenanceWindow;

/// When a blackout holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlackoutTime {
    /// From one time to another.
    Fixed {
        /// It starts (inclusive).
        from: DateTime<Utc>,
        /// It ends (exclusive).
        to: DateTime<Utc>,
    },
    /// Each time a cron schedule fires, for a duration.
    Recurring(Box<MaintenanceWindow>),
}

/// `rotation.blackouts[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blackout {
    /// Its name, for messages.
    pub name: String,
    /// When.
    pub time: BlackoutTime,
    /// The environments it holds (empty: all).
    pub envs: Vec<String>,
}

/// Reads `2026-12-20T00:00` (or with seconds) in `tz`.
pub fn parse_local(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| format!("{text:?} is not a time like 2026-12-20T00:00"))?;
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            Ok(t.with_timezone(&Utc))
        }
        chrono::LocalResult::None => Err(format!("{text} does not exist in {tz} (a clock change)")),
    }
}

impl Blackout {
    /// Whether it holds environment `env`.
    pub fn covers(&self, env: &str) -> bool {
        self.envs.is_empty() || self.envs.iter().any(|e| e == env)
    }

    /// When it ends, if it holds at `at`.
    pub fn until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.time {
            BlackoutTime::Fixed { from, to } => (*from <= at && at < *to).then_some(*to),
            BlackoutTime::Recurring(window) => {
                let local = at.with_timezone(&window.timezone);
                let opened = window.start.previous_at_or_before(&local)?.with_timezone(&Utc);
                let closes = opened + window.duration.to_chrono();
                (at < closes).then_some(closes)
            }
        }
    }
}

/// The blackout holding `env` at `at`, if any, and when it ends (the latest end, when several
/// overlap).
pub fn blackout_at<'a>(
    blackouts: &'a [Blackout],
    env: &str,
    at: DateTime<Utc>,
) -> Option<(&'a Blackout, DateTime<Utc>)> {
    blackouts
        .iter()
        .filter(|b| b.covers(env))
        .filter_map(|b| b.until(at).map(|end| (b, end)))
        .max_by_key(|(_, end)| *end)
}

/// When a scheduled secret next starts after `after`: the first firing of `schedule` inside
/// `windows` (when there are any) and outside every blackout, plus `jitter_ms` unless that
/// leaves its window or enters a blackout. Looks at most `horizon` ahead. The scheduler and
/// `dsops plan` both use it.
pub fn next_start(
    schedule: &super::Schedule,
    windows: &[MaintenanceWindow],
    blackouts: &[&Blackout],
    jitter_ms: u64,
    after: DateTime<Utc>,
    horizon: chrono::TimeDelta,
) -> Option<DateTime<Utc>> {
    let held = |at: DateTime<Utc>| blackouts.iter().any(|b| b.until(at).is_some());
    let mut cursor = after;
    for _ in 0..1_000 {
        let firing = super::next_due_in_windows(schedule, windows, cursor, horizon)?;
        if firing > after + horizon {
            return None;
        }
        if held(firing) {
            cursor = firing;
            continue;
        }
        let start = firing + chrono::TimeDelta::milliseconds(jitter_ms as i64);
        let in_window = windows.is_empty() || windows.iter().any(|w| w.contains(start));
        return Some(if in_window && !held(start) { start } else { firing });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Duration, Schedule};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fixed_and_recurring_blackouts_hold_in_their_time_zone_and_scope() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let freeze = Blackout {
            name: "freeze".into(),
            time: BlackoutTime::Fixed {
                from: parse_local("2026-12-20T00:00", berlin).unwrap(),
                to: parse_local("2027-01-04T00:00", berlin).unwrap(),
            },
            envs: vec!["production".into()],
        };
        assert_eq!(
            freeze.until(at("2026-12-19T23:30:00Z")),
            Some(at("2027-01-03T23:00:00Z")),
            "00:00 Berlin is 23:00 UTC"
        );
        assert_eq!(freeze.until(at("2026-12-19T22:30:00Z")), None);
        assert_eq!(freeze.until(at("2027-01-03T23:00:00Z")), None, "the end is excluded");
        let market = Blackout {
            name: "market-hours".into(),
            time: BlackoutTime::Recurring(Box::new(
                MaintenanceWindow::new(
                    Schedule::parse("30 9 * * 1-5").unwrap(),
                    Duration::parse("6h30m").unwrap(),
                    Some("America/New_York"),
                )
                .unwrap(),
            )),
            envs: Vec::new(),
        };
        // Monday 2026-12-07 10:00 New York = 15:00 UTC.
        assert_eq!(market.until(at("2026-12-07T15:00:00Z")), Some(at("2026-12-07T21:00:00Z")));
        assert_eq!(market.until(at("2026-12-06T15:00:00Z")), None, "a Sunday");
        let all = [freeze, market];
        assert!(
            blackout_at(&all, "staging", at("2026-12-21T12:00:00Z")).is_none(),
            "freeze holds production only"
        );
        let (held, _) = blackout_at(&all, "production", at("2026-12-21T15:00:00Z")).unwrap();
        assert_eq!(held.name, "freeze", "the latest end wins");
        assert!(parse_local("2026-03-29T02:30", berlin).unwrap_err().contains("does not exist"));
        assert!(parse_local("tomorrow", berlin).is_err());
    }
}
