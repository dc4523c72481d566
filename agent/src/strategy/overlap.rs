//! `overlap`: one user that holds two passwords during the grace period (Redis ACL users). Apply
//! adds the new password beside the current one, verify logs in with it, and consumers move to
//! the new value at their own pace while the old one keeps working. After promotion and the
//! grace period, retire waits (up to the agent's session wait) for the connections that logged
//! in before the new password existed, reports what it saw, and removes the old password only.
//! A rollback takes the run's password off the user and makes sure the current one still works.

use std::time::Duration;

use dsops_proto::domain::{Step, StepOutcome};

use super::{
    Context, Step_, Strategy, check_login, discard, new_value, not_in_place, pending, promoted,
    target_of, value_of, verify_login,
};
use crate::adapter::{Login, Target};
use crate::executor::StepResult;
use crate::secret::SecretValue;
use crate::store::{Fields, Label};

/// The `overlap` strategy for `user`.
#[derive(Debug)]
pub(crate) struct Overlap<'a> {
    pub(crate) user: &'a str,
}

impl Overlap<'_> {
    /// Makes sure `value` logs in as the user, adding it back if it does not.
    async fn keep_working(&self, target: &dyn Target, value: &SecretValue) -> Step_<()> {
        if target.login(self.user, value).await? == Login::Accepted {
            return Ok(());
        }
        target.add_password(self.user, value).await?;
        if target.login(self.user, value).await? == Login::Refused {
            return Err(StepResult::failed(
                StepOutcome::Retryable,
                format!("{}: the current value still does not log in after adding it", self.user),
            ));
        }
        Ok(())
    }

    /// Waits up to the agent's session wait for the user's connections older than `age` (opened
    /// before the new password existed, so with the old one) to close; what it saw, for the
    /// receipt.
    async fn wait_for_old_sessions(&self, cx: &Context<'_>, age: Duration) -> Step_<String> {
        let target = target_of(cx)?;
        let wait = cx.executor.config().session_wait;
        let started = std::time::Instant::now();
        let first = target.sessions_older_than(self.user, age).await?;
        let mut open = first;
        while open > 0 && started.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(250)).await;
            // The same connections, now that much older.
            open = target.sessions_older_than(self.user, age + started.elapsed()).await?;
        }
        Ok(match (first, open) {
            (0, _) => "no connection from before the new password".to_owned(),
            (seen, 0) => format!(
                "{seen} connection(s) from before the new password closed within {:?}",
                started.elapsed()
            ),
            (seen, open) => format!(
                "{seen} connection(s) from before the new password, {open} still open after {wait:?} (they keep their session; a new login needs the new value)"
            ),
        })
    }
}

impl Strategy for Overlap<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let fields = super::stage_fields(cx).await?;
        super::store_stage(cx, &fields, Some(self.user)).await
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        target_of(cx)?.add_password(self.user, &value_of(cx, &fields)?).await?;
        Ok(StepResult::ok(
            fingerprint,
            format!("new password added to {} beside the current one", self.user),
        ))
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        verify_login(cx, self.user, &value_of(cx, &fields)?, fingerprint).await
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let mut labels = cx.store.read_labels(&cx.entry).await?;
        let Some((info, current)) = labels
            .remove(&Label::Current)
            .filter(|(info, _)| info.run_id == cx.job.run_id.as_str())
        else {
            return Err(StepResult::failed(
                StepOutcome::NotApplied,
                format!("{}: run {} is not the current version", cx.job.store_ref, cx.job.run_id),
            ));
        };
        let new = value_of(cx, &current)?;
        let target = target_of(cx)?;
        let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
        let age = Duration::from_millis(now_ms.saturating_sub(info.created_at_ms));
        let sessions = self.wait_for_old_sessions(cx, age).await?;
        let previous = labels.remove(&Label::Previous).map(|(_, fields)| fields);
        let removed = match previous.as_ref().map(|fields| value_of(cx, fields)).transpose()? {
            Some(old) if old.expose() == new.expose() => "the previous value is the current one",
            Some(old) => {
                target.remove_password(self.user, &old).await?;
                "old password removed"
            }
            // No earlier value known to dsops (the first rotation): the user keeps the current
            // password only, which removes the ones set before dsops.
            None => {
                target.set_password(self.user, &new).await?;
                "passwords set before dsops removed"
            }
        };
        // Never leave the user without a working password.
        self.keep_working(target, &new).await?;
        Ok(StepResult::ok(None, format!("{removed} from {} ({sessions})", self.user)))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let target = target_of(cx)?;
        let current = match cx.store.read(&cx.entry, Label::Current).await? {
            Some(fields) => Some(value_of(cx, &fields)?),
            None => None,
        };
        if let Some(current) = &current {
            self.keep_working(target, current).await?;
        }
        if let Some((fields, _)) = pending(cx).await? {
            let run_value = value_of(cx, &fields)?;
            if current.as_ref().is_none_or(|c| c.expose() != run_value.expose()) {
                target.remove_password(self.user, &run_value).await?;
            }
        }
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        let target = target_of(cx)?;
        match checked {
            Step::Retire => {
                if promoted(cx).await?.is_none() {
                    return Ok(not_in_place("this run's version is not current"));
                }
                let previous = cx.store.read(&cx.entry, Label::Previous).await?;
                let done = match previous.as_ref().map(|fields| value_of(cx, fields)).transpose()? {
                    Some(old) => target.login(self.user, &old).await? == Login::Refused,
                    None => target.password_count(self.user).await? == 1,
                };
                Ok(if done {
                    StepResult::ok(None, format!("the old password of {} is gone", self.user))
                } else {
                    not_in_place(format!("{} still holds the old password", self.user))
                })
            }
            Step::Rollback => super::check_rolled_back(cx, self.user).await,
            _ => check_login(cx, |_| Some(self.user.to_owned())).await,
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        super::logs_in(cx, self.user, fields).await
    }
}
