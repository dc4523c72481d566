use std::fmt;

/// A length of time written as one or more `<number><unit>` parts: `30s`, `15m`, `24h`, `90d`,
/// `2w`, `1h30m`. Units are s, m, h, d (24 h) and w (7 d); each unit at most once, largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    seconds: u64,
}

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (examples: 30s, 15m, 24h, 90d, 2w, 1h30m)")]
pub struct DurationError {
    input: String,
    reason: String,
}

const UNITS: [(char, u64); 5] = [('w', 604_800), ('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

impl Duration {
    /// A duration of whole seconds.
    pub fn from_secs(seconds: u64) -> Duration {
        Duration { seconds }
    }

    /// Parses the text form.
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
        let fail =
            |reason: &str| DurationError { input: input.to_owned(), reason: reason.to_owned() };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut seconds: u64 = 0;
        let mut last_unit: Option<usize> = None;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("expected a number before each unit"));
            }
            let (number, after) = rest.split_at(digits);
            let unit = after.chars().next().ok_or_else(|| fail("the number has no unit"))?;
            let index = UNITS
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(|| fail(&format!("unknown unit {unit:?}; use s, m, h, d or w")))?;
            if last_unit.is_some_and(|last| index <= last) {
                return Err(fail("units must go from largest to smallest, each at most once"));
            }
            last_unit = Some(index);
            let value: u64 = number.parse().map_err(|_| fail("the number is too large"))?;
            seconds = value
                .checked_mul(UNITS[index].1)
                .and_then(|part| seconds.checked_add(part))
                .ok_or_else(|| fail("it is too long"))?;
            rest = &after[unit.len_utf8()..];
        }
        Ok(Duration { seconds })
    }

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.seconds
    }

    /// As a chrono duration, saturating at chrono's maximum.
    pub fn to_chrono(self) -> chrono::TimeDelta {
        i64::try_from(self.seconds)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl fmt::Display for Duration {
    /// The shortest text form that parses back to the same duration (`0s` for zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.seconds;
        for (unit, size) in UNITS {
            // Weeks are only used when they divide the whole duration: `10d` reads better
            // than `1w3d`.
            if unit == 'w' && !rest.is_multiple_of(size) {
                continue;
            }
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(Duration::parse("24h").unwrap().as_secs(), 86_400);
        assert_eq!(Duration::parse("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(Duration::parse("1h30m").unwrap().as_secs(), 5_400);
        assert_eq!(Duration::parse("2w").unwrap().as_secs(), 14 * 86_400);
        assert_eq!(Duration::parse("0s").unwrap().as_secs(), 0);
    }

    #[test]
    fn rejects_with_a_reason() {
        let cases = [
            ("", "it is empty"),
            ("90", "the number has no unit"),
            ("d", "expected a number"),
            ("5y", "unknown unit 'y'"),
            ("30m1h", "largest to smallest"),
            ("1h1h", "largest to smallest"),
            ("1.5h", "unknown unit '.'"),
            ("-1h", "expected a number"),
            ("99999999999999999999s", "too large"),
            ("99999999999999999w", "too long"),
        ];
        for (input, reason) in cases {
            let error = Duration::parse(input).unwrap_err().to_string();
            assert!(error.contains(reason), "{input}: {error}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(seconds in 0u64..10_000_000_000) {
            let duration = Duration::from_secs(seconds);
            prop_assert_eq!(Duration::parse(&duration.to_string()), Ok(duration));
        }
    }
}
