use std::fmt;

use super::ProtocolError;

/// Checks an identifier: 1..=max characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
fn check_identifier(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > max {
        return Err(format!("is {} characters long; at most {max} are allowed", value.len()));
    }
    if let Some(bad) =
        value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    if value.starts_with(['.', '-']) {
        return Err("must start with a letter, a digit or '_'".to_owned());
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn parse(value: &str, field: &str) -> Result<$name, ProtocolError> {
                check_identifier(value, $max).map_err(|reason| ProtocolError::invalid(field, reason))?;
                Ok($name(value.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The id of a rotation run, chosen by the control plane.
    RunId,
    128
);
identifier!(
    /// The id of an enrolled agent (the subject of its certificate).
    AgentId,
    128
);
/// A network segment name, as in dsops.yaml (a config name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName(String);

impl SegmentName {
    /// Validates a segment name.
    pub fn parse(value: &str, field: &str) -> Result<SegmentName, ProtocolError> {
        super::names::check_config_name(value, "segment")
            .map_err(|reason| ProtocolError::invalid(field, reason))?;
        Ok(SegmentName(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen id that makes a retried request apply once: 16 to 64 characters of
/// `[A-Za-z0-9_-]` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Validates a request id.
    pub fn parse(value: &str, field: &str) -> Result<RequestId, ProtocolError> {
        if !(16..=64).contains(&value.len()) {
            return Err(ProtocolError::invalid(
                field,
                format!("must be 16 to 64 characters long, got {}", value.len()),
            ));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(ProtocolError::invalid(field, "may contain only [A-Za-z0-9_-]"));
        }
        Ok(RequestId(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A secret's generation: starts at 1 and increases by one per run; fences stale results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(u64);

impl Generation {
    /// The first generation.
    pub const FIRST: Generation = Generation(1);

    /// Validates a generation from the wire (0 means "absent" in proto3).
    pub fn parse(value: u64, field: &str) -> Result<Generation, ProtocolError> {
        if value == 0 {
            return Err(ProtocolError::missing(field));
        }
        Ok(Generation(value))
    }

    /// The next generation.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_reject_empty_long_and_odd_characters() {
        assert!(RunId::parse("run-42.a_b", "run_id").is_ok());
        assert_eq!(
            RunId::parse("", "run_id").unwrap_err(),
            ProtocolError::invalid("run_id", "must not be empty")
        );
        assert!(
            RunId::parse(&"a".repeat(129), "run_id").unwrap_err().reason.contains("at most 128")
        );
        assert!(AgentId::parse("a b", "agent_id").unwrap_err().reason.contains("' '"));
        assert!(SegmentName::parse("-x", "segment").is_err());
    }

    #[test]
    fn request_ids_have_bounded_length() {
        assert!(RequestId::parse("0123456789abcdef", "request_id").is_ok());
        assert!(RequestId::parse("short", "request_id").is_err());
        assert!(RequestId::parse("0123456789abcdef/", "request_id").is_err());
    }

    #[test]
    fn generation_zero_is_missing() {
        assert_eq!(Generation::parse(0, "g").unwrap_err(), ProtocolError::missing("g"));
        assert_eq!(Generation::parse(3, "g").map(Generation::next).map(Generation::get), Ok(4));
    }
}
