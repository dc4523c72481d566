//! Rate limits as the catalog writes them (`rateLimit: 10/minute`, `low`): how many rotations
//! of one service instance may start per unit of time.

/// At most `runs` starts in any `per_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts allowed in a window.
    pub runs: u32,
    /// The window, ms.
    pub per_ms: u64,
}

impl RateLimit {
    /// Reads `N/second|minute|hour|day`, or a name: `low` (10/second), `medium` (50/second),
    /// `high` (250/second), `unlimited` (`None`). The names are for targets that take many
    /// calls (a database: `low` still rotates 600 roles a minute); vendor APIs name numbers.
    pub fn parse(text: &str) -> Result<Option<RateLimit>, String> {
        let per_second = |runs| Ok(Some(RateLimit { runs, per_ms: 1_000 }));
        match text {
            "low" => return per_second(10),
            "medium" => return per_second(50),
            "high" => return per_second(250),
            "unlimited" => return Ok(None),
            _ => {}
        }
        let bad = || {
            format!(
                "{text:?} is not a rate limit: expected N/second, N/minute, N/hour, N/day, or low, medium, high, unlimited"
            )
        };
        let (runs, unit) = text.split_once('/').ok_or_else(bad)?;
        let runs: u32 = runs.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let per_ms = match unit {
            "second" => 1_000,
            "minute" => 60_000,
            "hour" => 3_600_000,
            "day" => 86_400_000,
            _ => return Err(bad()),
        };
        Ok(Some(RateLimit { runs, per_ms }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_the_catalog_writes_them() {
        assert_eq!(RateLimit::parse("10/minute"), Ok(Some(RateLimit { runs: 10, per_ms: 60_000 })));
        assert_eq!(RateLimit::parse("5/second"), Ok(Some(RateLimit { runs: 5, per_ms: 1_000 })));
        assert_eq!(RateLimit::parse("low"), Ok(Some(RateLimit { runs: 10, per_ms: 1_000 })));
        assert_eq!(RateLimit::parse("high"), Ok(Some(RateLimit { runs: 250, per_ms: 1_000 })));
        assert_eq!(RateLimit::parse("unlimited"), Ok(None));
        for bad in ["0/second", "ten/minute", "5/fortnight", "fast", ""] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }
}
