//! Reading run summaries and steps in tests through the domain types: the admin API sends enums,
//! and these give their printed names (`Completed`, `stage`, `timed_out`) for assertions.

use dsops_proto::domain::{RunStatus, Step, StepResult};
use dsops_proto::wire::admin as wire;

/// A run summary's status.
pub trait RunView {
    /// `Completed`, `RolledBack`, `Skipped`, ... ([`RunStatus::name`]).
    fn state_name(&self) -> &'static str;
    /// Whether the run is over.
    fn is_finished(&self) -> bool;
}

impl RunView for wire::RunSummary {
    fn state_name(&self) -> &'static str {
        RunStatus::of(self).name()
    }

    fn is_finished(&self) -> bool {
        RunStatus::of(self).is_terminal()
    }
}

/// A committed step of a run.
pub trait StepView {
    /// `stage`, `apply`, ... (empty if unset).
    fn step_name(&self) -> &'static str;
    /// For a check, the step checked (empty otherwise).
    fn checked_name(&self) -> &'static str;
    /// `succeeded`, `timed_out`, ... ([`StepResult::name`]; `unknown` if unset).
    fn outcome_name(&self) -> &'static str;
}

fn step_text(value: i32) -> &'static str {
    Step::from_wire(value, "step").map_or("", Step::name)
}

impl StepView for wire::RunStep {
    fn step_name(&self) -> &'static str {
        step_text(self.step)
    }

    fn checked_name(&self) -> &'static str {
        step_text(self.checked_step)
    }

    fn outcome_name(&self) -> &'static str {
        StepResult::from_wire(self.result, "result").map_or("unknown", StepResult::name)
    }
}
