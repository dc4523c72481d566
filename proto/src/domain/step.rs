use std::fmt;

use super::ProtocolError;
use crate::wire::common as wire;

/// One step of the rotation protocol (see `docs/rotation.md`). Serialized by name
/// (`"stage"`, ...), as the replicated state records it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Write the new value to the store as pending.
    Stage,
    /// Change the target to accept the pending value.
    Apply,
    /// Prove the pending value works.
    Verify,
    /// Make pending current.
    Promote,
    /// Revoke the old credential after the grace period.
    Retire,
    /// Undo the run's changes.
    Rollback,
    /// Inspect target and store to resolve an indeterminate outcome.
    Check,
}

impl Step {
    /// Converts the wire enum (an `i32` in prost).
    pub fn from_wire(value: i32, field: &str) -> Result<Step, ProtocolError> {
        match wire::Step::try_from(value) {
            Ok(wire::Step::Stage) => Ok(Step::Stage),
            Ok(wire::Step::Apply) => Ok(Step::Apply),
            Ok(wire::Step::Verify) => Ok(Step::Verify),
            Ok(wire::Step::Promote) => Ok(Step::Promote),
            Ok(wire::Step::Retire) => Ok(Step::Retire),
            Ok(wire::Step::Rollback) => Ok(Step::Rollback),
            Ok(wire::Step::Check) => Ok(Step::Check),
            Ok(wire::Step::Unspecified) => Err(ProtocolError::missing(field)),
            Err(_) => Err(ProtocolError::invalid(field, format!("unknown step {value}"))),
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> i32 {
        let step = match self {
            Step::Stage => wire::Step::Stage,
            Step::Apply => wire::Step::Apply,
            Step::Verify => wire::Step::Verify,
            Step::Promote => wire::Step::Promote,
            Step::Retire => wire::Step::Retire,
            Step::Rollback => wire::Step::Rollback,
            Step::Check => wire::Step::Check,
        };
        step.into()
    }
}

impl Step {
    /// The name as printed and stored (`stage`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::Stage => "stage",
            Step::Apply => "apply",
            Step::Verify => "verify",
            Step::Promote => "promote",
            Step::Retire => "retire",
            Step::Rollback => "rollback",
            Step::Check => "check",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened when an agent performed a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// The effect is in place.
    Succeeded,
    /// Definitely nothing changed.
    NotApplied,
    /// Failed; safe to retry as is.
    Retryable,
    /// May or may not have taken effect: resolve by checking.
    Indeterminate,
    /// Refused under the agent's local policy.
    Refused,
}

impl StepOutcome {
    /// Converts the wire enum.
    pub fn from_wire(value: i32, field: &str) -> Result<StepOutcome, ProtocolError> {
        match wire::Outcome::try_from(value) {
            Ok(wire::Outcome::Succeeded) => Ok(StepOutcome::Succeeded),
            Ok(wire::Outcome::NotApplied) => Ok(StepOutcome::NotApplied),
            Ok(wire::Outcome::Retryable) => Ok(StepOutcome::Retryable),
            Ok(wire::Outcome::Indeterminate) => Ok(StepOutcome::Indeterminate),
            Ok(wire::Outcome::Refused) => Ok(StepOutcome::Refused),
            Ok(wire::Outcome::Unspecified) => Err(ProtocolError::missing(field)),
            Err(_) => Err(ProtocolError::invalid(field, format!("unknown outcome {value}"))),
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> i32 {
        let outcome = match self {
            StepOutcome::Succeeded => wire::Outcome::Succeeded,
            StepOutcome::NotApplied => wire::Outcome::NotApplied,
            StepOutcome::Retryable => wire::Outcome::Retryable,
            StepOutcome::Indeterminate => wire::Outcome::Indeterminate,
            StepOutcome::Refused => wire::Outcome::Refused,
        };
        outcome.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_and_reject_unspecified_and_unknown() {
        for step in [
            Step::Stage,
            Step::Apply,
            Step::Verify,
            Step::Promote,
            Step::Retire,
            Step::Rollback,
            Step::Check,
        ] {
            assert_eq!(Step::from_wire(step.to_wire(), "step"), Ok(step));
        }
        assert_eq!(Step::from_wire(0, "step"), Err(ProtocolError::missing("step")));
        assert!(Step::from_wire(99, "step").unwrap_err().reason.contains("unknown step 99"));
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            StepOutcome::Succeeded,
            StepOutcome::NotApplied,
            StepOutcome::Retryable,
            StepOutcome::Indeterminate,
            StepOutcome::Refused,
        ] {
            assert_eq!(StepOutcome::from_wire(outcome.to_wire(), "o"), Ok(outcome));
        }
        assert!(StepOutcome::from_wire(0, "o").is_err());
    }
}
