use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A cron schedule: five fields (minute hour day-of-month month day-of-week) or a nickname such
/// as `@daily`, evaluated in UTC unless a time zone is given.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cron schedule {input:?}: {reason} (expected five fields, minute hour day-of-month month day-of-week, e.g. \"0 3 * * 0\")"
)]
pub struct ScheduleError {
    input: String,
    reason: String,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

impl Eq for Schedule {}

impl Schedule {
    /// Parses a schedule.
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let fail = |reason: String| ScheduleError { input: input.to_owned(), reason };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty".to_owned()));
        }
        if !text.starts_with('@') {
            let fields = text.split_whitespace().count();
            if fields != 5 {
                return Err(fail(format!("it has {fields} fields")));
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|error| fail(error.to_string()))?;
        Ok(Schedule { text: text.to_owned(), cron })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` (in the given time zone's wall clock).
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>>
    where
        DateTime<Tz>: croner::CronDateTime,
    {
        self.cron.find_next_occurrence(after, false).ok()
    }

    /// The latest time at or before `at`.
    pub fn previous_at_or_before<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Option<DateTime<Tz>>
    where
        DateTime<Tz>: croner::CronDateTime,
    {
        self.cron.find_previous_occurrence(at, true).ok()
    }

    /// The first UTC time strictly after `after`.
    pub fn next_utc(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(&after)
    }

    /// A human description, e.g. "At 03:00 on Sunday".
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn next_occurrence_is_computed_in_utc() {
        let schedule = Schedule::parse("0 3 * * 0").unwrap();
        // 2026-11-28 is a Saturday.
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        assert_eq!(
            schedule.next_utc(now),
            Some(Utc.with_ymd_and_hms(2026, 11, 29, 3, 0, 0).unwrap())
        );
        assert!(Schedule::parse("@daily").is_ok());
    }

    #[test]
    fn rejects_wrong_field_counts_and_values() {
        for (input, reason) in [
            ("", "it is empty"),
            ("0 3 * *", "it has 4 fields"),
            ("0 0 3 * * 0", "it has 6 fields"),
            ("61 3 * * 0", "invalid cron schedule"),
            ("0 3 * * funday", "invalid cron schedule"),
        ] {
            let error = Schedule::parse(input).unwrap_err().to_string();
            assert!(error.contains(reason), "{input}: {error}");
        }
    }
}
