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

mirror_wire!(Step, wire::Step, "step", {
    Stage => "stage",
    Apply => "apply",
    Verify => "verify",
    Promote => "promote",
    Retire => "retire",
    Rollback => "rollback",
    Check => "check",
});

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

mirror_wire!(StepOutcome, wire::Outcome, "outcome", {
    Succeeded => "succeeded",
    NotApplied => "not_applied",
    Retryable => "retryable",
    Indeterminate => "indeterminate",
    Refused => "refused",
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProtocolError;

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
