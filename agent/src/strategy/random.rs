//! `random`: an application secret that lives in the store only. Stage generates it, promote
//! makes it current; there is no target to change, verify or retire.

use dsops_proto::domain::{Step, StepOutcome};

use super::{Context, Step_, Strategy, discard, pending};
use crate::executor::StepResult;
use crate::store::Fields;

/// The `random` strategy.
#[derive(Debug)]
pub(crate) struct Random;

fn no_target() -> StepResult {
    StepResult::failed(StepOutcome::Refused, "no target for this strategy")
}

impl Strategy for Random {
    async fn apply(&self, _cx: &Context<'_>) -> Step_<StepResult> {
        Err(no_target())
    }

    async fn verify(&self, _cx: &Context<'_>) -> Step_<StepResult> {
        Err(no_target())
    }

    async fn retire(&self, _cx: &Context<'_>) -> Step_<StepResult> {
        Ok(StepResult::ok(None, "nothing to revoke: the old value was replaced in place"))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => Ok(StepResult::ok(None, "nothing to revoke")),
            Step::Rollback if pending(cx).await?.is_some() => {
                Ok(super::not_in_place("this run's pending value is still there"))
            }
            Step::Rollback => Ok(StepResult::ok(None, "rolled back")),
            _ => Err(no_target()),
        }
    }

    async fn value_works(&self, _cx: &Context<'_>, _fields: &Fields) -> Step_<Result<(), String>> {
        Ok(Ok(()))
    }
}
