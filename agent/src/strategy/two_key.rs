//! `two-key`: two database users with the same privileges take turns. Stage picks the inactive
//! one and a new password for it; apply sets the password and enables its login; after promotion
//! and the grace period, retire waits for the old user's sessions and disables its login.

use dsops_proto::domain::{Step, StepOutcome};

use super::{
    Context, Step_, Strategy, check_login, discard, new_value, not_in_place, pending, promoted,
    set_new_password, stage_fields, store_stage, target_of, value_of, verify_login,
};
use crate::adapter::Login;
use crate::executor::{StepResult, USERNAME_FIELD};
use crate::secret::SecretValue;
use crate::store::{Fields, Label};

/// The `two-key` strategy for a pair of users.
#[derive(Debug)]
pub(crate) struct TwoKey<'a> {
    pub(crate) users: &'a [String; 2],
}

impl TwoKey<'_> {
    /// The user a version's password belongs to (one of the pair).
    fn user_of(&self, fields: &Fields) -> Option<String> {
        fields.get(USERNAME_FIELD).map(|u| u.expose().to_owned()).filter(|u| self.users.contains(u))
    }

    /// The other user of the pair.
    fn other(&self, user: &str) -> String {
        if user == self.users[0] { self.users[1].clone() } else { self.users[0].clone() }
    }

    /// The run's new credential: its user, value and fingerprint.
    async fn new_credential(
        &self,
        cx: &Context<'_>,
    ) -> Step_<(String, SecretValue, Option<dsops_proto::domain::Fingerprint>)> {
        let (fields, fingerprint) = new_value(cx).await?;
        let value = value_of(cx, &fields)?;
        let user = self.user_of(&fields).ok_or_else(|| {
            StepResult::failed(
                StepOutcome::Refused,
                "the staged version names no user of this strategy",
            )
        })?;
        Ok((user, value, fingerprint))
    }
}

impl Strategy for TwoKey<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let mut fields = stage_fields(cx).await?;
        if !cx.job.restore_previous {
            let users = self.users;
            let target = target_of(cx)?;
            for user in users {
                if !target.user_exists(user).await? {
                    return Err(StepResult::failed(
                        StepOutcome::Refused,
                        format!("two-key: user {user:?} does not exist on the target"),
                    ));
                }
            }
            let (a, b) = (target.privileges(&users[0]).await?, target.privileges(&users[1]).await?);
            if a != b {
                let only_a: Vec<&String> = a.iter().filter(|p| !b.contains(p)).collect();
                let only_b: Vec<&String> = b.iter().filter(|p| !a.contains(p)).collect();
                return Err(StepResult::failed(
                    StepOutcome::Refused,
                    format!(
                        "two-key: {} and {} have different privileges (only {}: {only_a:?}; only {}: {only_b:?}); grant both the same before rotating",
                        users[0], users[1], users[0], users[1]
                    ),
                ));
            }
            let current = cx.store.read(&cx.entry, Label::Current).await?.unwrap_or_default();
            let active = current.get(USERNAME_FIELD).map(|u| u.expose().to_owned());
            let inactive =
                if active.as_deref() == Some(users[1].as_str()) { &users[0] } else { &users[1] };
            fields.insert(USERNAME_FIELD.to_owned(), SecretValue::new(inactive.clone()));
        }
        let user = self.user_of(&fields);
        store_stage(cx, &fields, user.as_deref()).await
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (user, value, fingerprint) = self.new_credential(cx).await?;
        set_new_password(cx, &user, &value, fingerprint, true).await
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (user, value, fingerprint) = self.new_credential(cx).await?;
        verify_login(cx, &user, &value, fingerprint).await
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (current, _) = promoted(cx).await?.ok_or_else(|| {
            StepResult::failed(
                StepOutcome::NotApplied,
                format!("{}: run {} is not the current version", cx.job.store_ref, cx.job.run_id),
            )
        })?;
        let Some(new_user) = self.user_of(&current) else {
            return Err(StepResult::failed(
                StepOutcome::Refused,
                "the current version names no user of this strategy",
            ));
        };
        // The user that is not current is the old one (also when the previous version predates
        // dsops and names no user).
        let old_user = self.other(&new_user);
        let target = target_of(cx)?;
        let wait = cx.executor.config().session_wait;
        let started = std::time::Instant::now();
        let mut open = target.open_sessions(&old_user).await?;
        while open > 0 && started.elapsed() < wait {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            open = target.open_sessions(&old_user).await?;
        }
        target.set_login_enabled(&old_user, false).await?;
        let sessions = if open == 0 {
            "no sessions open".to_owned()
        } else {
            format!("{open} session(s) still open after {wait:?}")
        };
        Ok(StepResult::ok(None, format!("login of {old_user} disabled ({sessions})")))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if let Some(current) = cx.store.read(&cx.entry, Label::Current).await?
            && let Some(user) = self.user_of(&current)
        {
            // The active user keeps working; make sure a half-done earlier retire did not lock it.
            target_of(cx)?.set_login_enabled(&user, true).await?;
        }
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => {
                let Some((current, _)) = promoted(cx).await? else {
                    return Ok(not_in_place("this run's version is not current"));
                };
                let old_user = self.other(&self.user_of(&current).unwrap_or_default());
                let previous = cx.store.read(&cx.entry, Label::Previous).await?.unwrap_or_default();
                let Ok(old_value) = value_of(cx, &previous) else {
                    return Ok(not_in_place(format!("cannot tell whether {old_user} is disabled")));
                };
                Ok(match target_of(cx)?.login(&old_user, &old_value).await? {
                    Login::Refused => {
                        StepResult::ok(None, format!("{old_user} can no longer log in"))
                    }
                    Login::Accepted => not_in_place(format!("{old_user} can still log in")),
                })
            }
            Step::Rollback if pending(cx).await?.is_some() => {
                Ok(not_in_place("this run's pending value is still there"))
            }
            Step::Rollback => Ok(StepResult::ok(None, "rolled back")),
            _ => check_login(cx, |fields| self.user_of(fields)).await,
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        let value = value_of(cx, fields)?;
        let user = self.user_of(fields).ok_or_else(|| {
            StepResult::failed(StepOutcome::Refused, "the staged version names no user")
        })?;
        let target = target_of(cx)?;
        if target.login(&user, &value).await? == Login::Refused {
            // Apply may have stopped between setting the password and enabling login.
            target.set_login_enabled(&user, true).await?;
        }
        Ok(match target.login(&user, &value).await? {
            Login::Accepted => Ok(()),
            Login::Refused => Err(format!("the run's value does not log in as {user}")),
        })
    }
}
