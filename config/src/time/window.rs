use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Duration, Schedule};

/// A recurring maintenance window: it opens at each time of `start` (evaluated in `timezone`)
/// and stays open for `duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    /// When the window opens.
    pub start: Schedule,
    /// How long it stays open.
    pub duration: Duration,
    /// The time zone `start` is read in.
    pub timezone: Tz,
}

/// Why a window is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?} (expected an IANA name such as \"UTC\" or \"Europe/Berlin\")")]
    UnknownTimeZone(String),
    /// The window never closes or never opens.
    #[error("the window's duration must be between 1m and 7d, got {0}")]
    BadDuration(Duration),
}

impl MaintenanceWindow {
    /// Builds a window, checking the time zone and duration.
    pub fn new(
        start: Schedule,
        duration: Duration,
        timezone: Option<&str>,
    ) -> Result<MaintenanceWindow, WindowError> {
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => {
                name.parse::<Tz>().map_err(|_| WindowError::UnknownTimeZone(name.to_owned()))?
            }
        };
        if duration.as_secs() < 60 || duration.as_secs() > 7 * 86_400 {
            return Err(WindowError::BadDuration(duration));
        }
        Ok(MaintenanceWindow { start, duration, timezone })
    }

    /// Whether the window is open at `at`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone);
        match self.start.previous_at_or_before(&local) {
            Some(opened) => at < opened.with_timezone(&Utc) + self.duration.to_chrono(),
            None => false,
        }
    }

    /// A description such as `0 2 * * 6 for 4h (Europe/Berlin)`.
    pub fn describe(&self) -> String {
        format!("{} for {} ({})", self.start, self.duration, self.timezone)
    }
}

/// The first time strictly after `after` at which `schedule` fires and, when there are windows,
/// at least one window is open. Looks at most `horizon` ahead.
pub fn next_due_in_windows(
    schedule: &Schedule,
    windows: &[MaintenanceWindow],
    after: DateTime<Utc>,
    horizon: chrono::TimeDelta,
) -> Option<DateTime<Utc>> {
    let limit = after + horizon;
    let mut cursor = after;
    // Bounded: a minutely schedule over a year is ~525k steps; cap the work instead.
    for _ in 0..100_000 {
        let next = schedule.next_utc(cursor)?;
        if next > limit {
            return None;
        }
        if windows.is_empty() || windows.iter().any(|w| w.contains(next)) {
            return Some(next);
        }
        cursor = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn window(cron: &str, duration: &str, tz: &str) -> MaintenanceWindow {
        MaintenanceWindow::new(
            Schedule::parse(cron).unwrap(),
            Duration::parse(duration).unwrap(),
            Some(tz),
        )
        .unwrap()
    }

    #[test]
    fn window_contains_respects_time_zone() {
        // Saturdays 02:00-06:00 in Berlin (UTC+1 in winter) = 01:00-05:00 UTC.
        let w = window("0 2 * * 6", "4h", "Europe/Berlin");
        let inside = Utc.with_ymd_and_hms(2026, 11, 28, 1, 30, 0).unwrap();
        let before = Utc.with_ymd_and_hms(2026, 11, 28, 0, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap();
        assert!(w.contains(inside));
        assert!(!w.contains(before));
        assert!(!w.contains(after));
    }

    #[test]
    fn next_due_skips_times_outside_windows() {
        // Daily at 03:00 UTC, but only inside Sunday 00:00-06:00 UTC.
        let schedule = Schedule::parse("0 3 * * *").unwrap();
        let windows = [window("0 0 * * 0", "6h", "UTC")];
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(); // Wednesday
        let due = next_due_in_windows(&schedule, &windows, now, chrono::TimeDelta::days(366));
        assert_eq!(due, Some(Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap()));
        // A schedule that never meets the window.
        let never = Schedule::parse("0 12 * * 1").unwrap();
        assert_eq!(next_due_in_windows(&never, &windows, now, chrono::TimeDelta::days(366)), None);
    }

    #[test]
    fn rejects_unknown_zones_and_silly_durations() {
        let start = Schedule::parse("0 2 * * 6").unwrap();
        assert!(matches!(
            MaintenanceWindow::new(
                start.clone(),
                Duration::parse("4h").unwrap(),
                Some("Mars/Olympus")
            ),
            Err(WindowError::UnknownTimeZone(_))
        ));
        assert!(matches!(
            MaintenanceWindow::new(start, Duration::parse("30s").unwrap(), None),
            Err(WindowError::BadDuration(_))
        ));
    }
}
