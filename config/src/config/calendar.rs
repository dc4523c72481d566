//! The calendar of `rotation`: `blackouts` (times nothing starts but break-glass) and
//! `defaults.jitter` (a deterministic offset per secret so a fleet does not rotate in one
//! second).
//!
//! ```yaml
//! rotation:
//!   defaults:
//!     jitter: 30m
//!   blackouts:
//!     - { name: year-end-freeze, from: "2026-12-20T00:00", to: "2027-01-04T00:00", timezone: Europe/Berlin, envs: [production] }
//!     - { name: market-hours, cron: "30 9 * * 1-5", duration: 6h30m, timezone: America/New_York }
//! ```

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::document::{Diagnostics, Fields, Value};
use crate::time::{Blackout, BlackoutTime, Duration, MaintenanceWindow, Schedule, parse_local};

/// The longest jitter.
const MAX_JITTER_SECS: u64 = 86_400;
/// The longest fixed blackout.
const MAX_FIXED_DAYS: i64 = 366;

const BLACKOUT_KEYS: [&str; 7] = ["name", "from", "to", "cron", "duration", "timezone", "envs"];

/// Reads `rotation.blackouts`.
pub(super) fn parse_blackouts(
    rotation: &Fields<'_>,
    env_names: &[&str],
    diagnostics: &mut Diagnostics,
) -> Vec<Blackout> {
    let mut out = Vec::new();
    let Some(node) = rotation.get("blackouts") else { return out };
    let Value::Seq(items) = &node.value else {
        rotation.error(
            "blackouts",
            format!("expected a list, found {}", node.describe()),
            diagnostics,
        );
        return out;
    };
    for (index, item) in items.iter().enumerate() {
        let path = format!("rotation.blackouts[{index}]");
        let Some(fields) = Fields::read(item, rotation.file(), &path, &BLACKOUT_KEYS, diagnostics)
        else {
            continue;
        };
        let before = diagnostics.error_count();
        let name =
            fields.required_string("name", "a name for messages", diagnostics).unwrap_or_default();
        let tz_name = fields.string("timezone", diagnostics);
        let tz: Tz = match tz_name.as_deref().map(str::parse::<Tz>) {
            None => Tz::UTC,
            Some(Ok(tz)) => tz,
            Some(Err(_)) => {
                fields.error(
                    "timezone",
                    format!(
                        "unknown time zone {:?} (an IANA name such as \"Europe/Berlin\")",
                        tz_name.unwrap_or_default()
                    ),
                    diagnostics,
                );
                Tz::UTC
            }
        };
        let envs = fields.known_names("envs", "environment", env_names, diagnostics);
        let fixed = fields.get("from").is_some() || fields.get("to").is_some();
        let recurring = fields.get("cron").is_some() || fields.get("duration").is_some();
        let time = match (fixed, recurring) {
            (true, true) => {
                fields.error(
                    "cron",
                    "a blackout is either from/to or cron/duration, not both",
                    diagnostics,
                );
                None
            }
            (false, false) => {
                fields.error("from", "say when: from and to, or cron and duration", diagnostics);
                None
            }
            (true, false) => {
                let read = |key: &str, diagnostics: &mut Diagnostics| {
                    let text =
                        fields.required_string(key, "a time like 2026-12-20T00:00", diagnostics)?;
                    parse_local(&text, tz).map_err(|e| fields.error(key, e, diagnostics)).ok()
                };
                match (read("from", diagnostics), read("to", diagnostics)) {
                    (Some(from), Some(to)) if to <= from => {
                        fields.error("to", "must be after from", diagnostics);
                        None
                    }
                    (Some(from), Some(to)) if (to - from).num_days() > MAX_FIXED_DAYS => {
                        fields.error(
                            "to",
                            format!("at most {MAX_FIXED_DAYS} days after from"),
                            diagnostics,
                        );
                        None
                    }
                    (Some(from), Some(to)) => Some(BlackoutTime::Fixed { from, to }),
                    _ => None,
                }
            }
            (false, true) => {
                let cron =
                    fields.required_string("cron", "when it starts (5-field cron)", diagnostics);
                let duration = fields.required_string("duration", "how long it holds", diagnostics);
                let cron = cron.and_then(|c| {
                    Schedule::parse(&c)
                        .map_err(|e| fields.error("cron", e.to_string(), diagnostics))
                        .ok()
                });
                let duration = duration.and_then(|d| {
                    Duration::parse(&d)
                        .map_err(|e| fields.error("duration", e.to_string(), diagnostics))
                        .ok()
                });
                match (cron, duration) {
                    (Some(cron), Some(duration)) => {
                        match MaintenanceWindow::new(cron, duration, Some(tz.name())) {
                            Ok(window) => Some(BlackoutTime::Recurring(Box::new(window))),
                            Err(error) => {
                                fields.error("duration", error.to_string(), diagnostics);
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
        };
        if diagnostics.error_count() > before {
            continue;
        }
        if let Some(time) = time {
            out.push(Blackout { name, time, envs });
        }
    }
    out
}

/// Reads `rotation.defaults.jitter`.
pub(super) fn parse_jitter(
    defaults: &Fields<'_>,
    diagnostics: &mut Diagnostics,
) -> Option<Duration> {
    let text = defaults.string("jitter", diagnostics)?;
    match Duration::parse(&text) {
        Ok(d) if d.as_secs() <= MAX_JITTER_SECS => Some(d),
        Ok(_) => {
            defaults.error("jitter", "at most 1d", diagnostics);
            None
        }
        Err(error) => {
            defaults.error("jitter", error.to_string(), diagnostics);
            None
        }
    }
}

/// The offset of `env/key` within `jitter`, ms: derived from the secret's id alone, so every
/// node computes the same one.
pub fn jitter_ms(jitter: Option<Duration>, env: &str, key: &str) -> u64 {
    let Some(jitter) = jitter.map(|j| j.as_secs() * 1000).filter(|j| *j > 0) else { return 0 };
    let digest = Sha256::digest(format!("dsops-jitter\n{env}/{key}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_the_same_everywhere_and_spread_within_its_bound() {
        let jitter = Some(Duration::parse("30m").unwrap());
        let a = jitter_ms(jitter, "prod", "DB_PASSWORD");
        assert_eq!(a, jitter_ms(jitter, "prod", "DB_PASSWORD"), "deterministic");
        assert!(a < 1_800_000);
        assert_eq!(jitter_ms(None, "prod", "DB_PASSWORD"), 0);
        let offsets: std::collections::BTreeSet<u64> =
            (0..100).map(|i| jitter_ms(jitter, "prod", &format!("K{i}")) / 60_000).collect();
        assert!(
            offsets.len() > 20,
            "100 secrets fall into many different minutes: {}",
            offsets.len()
        );
    }

    #[test]
    fn blackout_mistakes_are_named_where_they_are() {
        let text = "version: 1
rotation:
  defaults: { jitter: 2d }
  blackouts:
    - { name: a, from: \"2026-12-20T00:00\", to: \"2026-12-19T00:00\" }
    - { name: b, cron: \"0 0 * * *\", duration: 1h, from: \"2026-12-20T00:00\" }
    - { name: c }
    - { name: d, from: \"2026-12-20T00:00\", to: \"2026-12-21T00:00\", timezone: Mars/Olympus, envs: [prodd] }
    - { name: e, cron: \"0 0 * * *\", duration: 9d }
envs:
  prod: {}
";
        let got = super::super::tests::findings(text);
        let messages: Vec<&str> =
            got.iter().map(|f| f.split(": error: ").nth(1).unwrap_or(f)).collect();
        for expected in [
            "rotation.defaults.jitter: at most 1d",
            "rotation.blackouts[0].to: must be after from",
            "rotation.blackouts[1].cron: a blackout is either from/to or cron/duration, not both",
            "rotation.blackouts[2].from: say when: from and to, or cron and duration",
            "rotation.blackouts[3].timezone: unknown time zone \"Mars/Olympus\"",
            "rotation.blackouts[3].envs[0]: unknown environment \"prodd\"; did you mean \"prod\"?",
            "rotation.blackouts[4].duration: the window's duration must be between 1m and 7d",
        ] {
            assert!(messages.iter().any(|m| m.starts_with(expected)), "{expected:?} in {got:#?}");
        }
        assert_eq!(got.len(), 7, "{got:#?}");
    }
}
