//! How a run and its steps stand, as the replicated state records them and the admin API
//! reports them: [`RunPhase`], [`StepResult`], and a node's [`MemberRole`].
//!
//! Serialized by name, as the replicated log stores them (`"rolling_back"`, `"timed_out"`): a
//! rename here changes the log format, which the golden log fixtures catch.

use std::fmt;

use super::StepOutcome;
use crate::wire::admin as wire;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Accepted, nothing sent yet.
    Requested,
    /// The stage step was sent to an agent.
    Dispatched,
    /// The new value is pending in the store.
    Staged,
    /// The target accepts the new value.
    Applied,
    /// A fresh login with the new value worked.
    Verified,
    /// The new value is current in the store.
    Promoted,
    /// The old credential was revoked.
    Retired,
    /// Done.
    Completed,
    /// Undoing the run's changes.
    RollingBack,
    /// Undone; the old value is current and works.
    RolledBack,
    /// Stopped after exhausting retries; needs a human.
    Quarantined,
    /// Waiting for approvals; nothing is sent to an agent before they are in.
    AwaitingApproval,
    /// Denied by an approver; nothing changed.
    Denied,
    /// Not approved in time; nothing changed.
    Expired,
}

mirror_wire!(RunPhase, wire::RunPhase, "run phase", {
    Requested => "Requested",
    Dispatched => "Dispatched",
    Staged => "Staged",
    Applied => "Applied",
    Verified => "Verified",
    Promoted => "Promoted",
    Retired => "Retired",
    Completed => "Completed",
    RollingBack => "RollingBack",
    RolledBack => "RolledBack",
    Quarantined => "Quarantined",
    AwaitingApproval => "AwaitingApproval",
    Denied => "Denied",
    Expired => "Expired",
});

impl RunPhase {
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunPhase::Completed
                | RunPhase::RolledBack
                | RunPhase::Quarantined
                | RunPhase::Denied
                | RunPhase::Expired
        )
    }

    /// Whether the run is over without its new value in place (rolled back or quarantined).
    pub fn is_failure(self) -> bool {
        matches!(self, RunPhase::RolledBack | RunPhase::Quarantined)
    }
}

/// What a step came to, as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// The effect is in place.
    Succeeded,
    /// Definitely nothing changed.
    NotApplied,
    /// Failed; safe to retry as is.
    Retryable,
    /// May or may not have taken effect: resolved by a check.
    Indeterminate,
    /// Refused under the agent's local policy.
    Refused,
    /// No receipt before the deadline: resolved by a check.
    TimedOut,
}

mirror_wire!(StepResult, wire::StepResult, "step result", {
    Succeeded => "succeeded",
    NotApplied => "not_applied",
    Retryable => "retryable",
    Indeterminate => "indeterminate",
    Refused => "refused",
    TimedOut => "timed_out",
});

impl From<StepOutcome> for StepResult {
    fn from(outcome: StepOutcome) -> StepResult {
        match outcome {
            StepOutcome::Succeeded => StepResult::Succeeded,
            StepOutcome::NotApplied => StepResult::NotApplied,
            StepOutcome::Retryable => StepResult::Retryable,
            StepOutcome::Indeterminate => StepResult::Indeterminate,
            StepOutcome::Refused => StepResult::Refused,
        }
    }
}

/// How an entry of a rotate response or a run summary stands: a run's phase, or why the entry
/// stands for no run. `Unknown` is a phase this release does not know (a newer server's): it
/// counts as over, so nothing waits on it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// A run in this phase.
    Phase(RunPhase),
    /// A dry run: a run would start.
    WouldStart,
    /// Skipped; the summary's detail says why.
    Skipped,
    /// Waits in a promotion wave; it starts by itself (the detail says after what).
    Waiting,
    /// A phase this release does not know.
    Unknown,
}

impl RunStatus {
    /// The status of a summary as the admin API sent it.
    pub fn of(run: &wire::RunSummary) -> RunStatus {
        match wire::NotStarted::try_from(run.not_started) {
            Ok(wire::NotStarted::DryRun) => RunStatus::WouldStart,
            Ok(wire::NotStarted::Skipped) => RunStatus::Skipped,
            Ok(wire::NotStarted::Waiting) => RunStatus::Waiting,
            Ok(wire::NotStarted::Unspecified) => {
                RunPhase::from_wire(run.phase, "phase").map_or(RunStatus::Unknown, RunStatus::Phase)
            }
            Err(_) => RunStatus::Unknown,
        }
    }

    /// The name as printed (`Completed`, `WouldStart`, `Skipped`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Phase(phase) => phase.name(),
            RunStatus::WouldStart => "WouldStart",
            RunStatus::Skipped => "Skipped",
            RunStatus::Waiting => "Waiting",
            RunStatus::Unknown => "Unknown",
        }
    }

    /// A run that is over (or whose phase is unknown); entries without a run are not runs.
    pub fn is_terminal(self) -> bool {
        match self {
            RunStatus::Phase(phase) => phase.is_terminal(),
            RunStatus::Unknown => true,
            RunStatus::WouldStart | RunStatus::Skipped | RunStatus::Waiting => false,
        }
    }

    /// A run that is still going.
    pub fn is_in_flight(self) -> bool {
        matches!(self, RunStatus::Phase(phase) if !phase.is_terminal())
    }

    /// A run that ended without its new value in place, or in an unknown phase.
    pub fn is_failure(self) -> bool {
        match self {
            RunStatus::Phase(phase) => phase.is_failure(),
            RunStatus::Unknown => true,
            RunStatus::WouldStart | RunStatus::Skipped | RunStatus::Waiting => false,
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A control-plane node's role in the raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Accepts writes and replicates them.
    Leader,
    /// A voter following the leader.
    Follower,
    /// Replicates but does not vote.
    Learner,
    /// A voter asking for votes.
    Candidate,
}

mirror_wire!(MemberRole, wire::MemberRole, "member role", {
    Leader => "leader",
    Follower => "follower",
    Learner => "learner",
    Candidate => "candidate",
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProtocolError;

    #[test]
    fn every_value_round_trips_and_unspecified_or_unknown_values_are_refused() {
        for phase in RunPhase::ALL {
            assert_eq!(RunPhase::from_wire(phase.to_wire(), "phase"), Ok(*phase));
            let json = serde_json::to_string(phase).unwrap();
            assert_eq!(serde_json::from_str::<RunPhase>(&json).unwrap(), *phase);
        }
        for result in StepResult::ALL {
            assert_eq!(StepResult::from_wire(result.to_wire(), "result"), Ok(*result));
        }
        for role in MemberRole::ALL {
            assert_eq!(MemberRole::from_wire(role.to_wire(), "role"), Ok(*role));
        }
        assert_eq!(RunPhase::from_wire(0, "phase"), Err(ProtocolError::missing("phase")));
        let unknown = StepResult::from_wire(77, "result").unwrap_err();
        assert!(unknown.reason.contains("unknown step result 77"), "{unknown}");
    }

    #[test]
    fn a_summary_reads_as_a_phase_or_as_no_run() {
        let mut run =
            wire::RunSummary { phase: RunPhase::Promoted.to_wire(), ..Default::default() };
        assert_eq!(RunStatus::of(&run), RunStatus::Phase(RunPhase::Promoted));
        assert!(RunStatus::of(&run).is_in_flight());
        run.phase = 99;
        assert_eq!(RunStatus::of(&run), RunStatus::Unknown);
        assert!(RunStatus::Unknown.is_terminal() && RunStatus::Unknown.is_failure());
        run.not_started = wire::NotStarted::Skipped.into();
        assert_eq!(RunStatus::of(&run).name(), "Skipped");
        assert!(!RunStatus::Skipped.is_terminal() && !RunStatus::Skipped.is_failure());
    }

    #[test]
    fn names_are_the_stored_and_printed_ones() {
        // The log stores these names; changing one breaks replay of older logs.
        assert_eq!(serde_json::to_string(&RunPhase::RollingBack).unwrap(), "\"rolling_back\"");
        assert_eq!(serde_json::to_string(&StepResult::TimedOut).unwrap(), "\"timed_out\"");
        assert_eq!(RunPhase::RolledBack.name(), "RolledBack");
        assert!(RunPhase::Quarantined.is_terminal() && RunPhase::Quarantined.is_failure());
        assert!(RunPhase::Completed.is_terminal() && !RunPhase::Completed.is_failure());
        assert!(!RunPhase::Promoted.is_terminal());
    }
}
