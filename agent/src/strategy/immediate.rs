//! `immediate`: one database user whose password changes in place. Apply sets it, verify logs
//! in with it; there is no old credential to retire (the old password stopped working at apply),
//! and a rollback restores the current value on the target if it no longer logs in.

use dsops_proto::domain::{Step, StepOutcome};

use super::{
    Context, Step_, Strategy, check_login, discard, new_value, set_new_password, target_of,
    value_of, verify_login,
};
use crate::adapter::Login;
use crate::executor::StepResult;
use crate::store::{Fields, Label};

/// The `immediate` strategy for `user`.
#[derive(Debug)]
pub(crate) struct Immediate<'a> {
    pub(crate) user: &'a str,
}

impl Strategy for Immediate<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let fields = super::stage_fields(cx).await?;
        super::store_stage(cx, &fields, Some(self.user)).await
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        set_new_password(cx, self.user, &value_of(cx, &fields)?, fingerprint, false).await
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        verify_login(cx, self.user, &value_of(cx, &fields)?, fingerprint).await
    }

    async fn retire(&self, _cx: &Context<'_>) -> Step_<StepResult> {
        Ok(StepResult::ok(None, "nothing to revoke: the old value was replaced in place"))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if let Some(current) = cx.store.read(&cx.entry, Label::Current).await? {
            let target = target_of(cx)?;
            let value = value_of(cx, &current)?;
            if target.login(self.user, &value).await? == Login::Refused {
                target.set_password(self.user, &value).await?;
                if target.login(self.user, &value).await? == Login::Refused {
                    return Err(StepResult::failed(
                        StepOutcome::Retryable,
                        format!(
                            "{}: the current value still does not log in after restoring it",
                            self.user
                        ),
                    ));
                }
            }
        }
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => Ok(StepResult::ok(None, "nothing to revoke")),
            Step::Rollback => super::check_rolled_back(cx, self.user).await,
            _ => check_login(cx, |_| Some(self.user.to_owned())).await,
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        super::logs_in(cx, self.user, fields).await
    }
}
