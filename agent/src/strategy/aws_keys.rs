//! `overlap` for AWS IAM access keys (IAM lets a user hold two). Stage makes room (deleting the
//! key the previous rotation deactivated, or a never-used key a crashed stage left behind),
//! creates the second key and stages it; verify signs `sts:GetCallerIdentity` with the new key
//! and checks it is the user's; after promotion and the grace period, retire reports when the
//! old key was last used and deactivates it (it is deleted by the next rotation, so until then a
//! person can turn it back on); a rollback deletes the run's key. A user that already holds two
//! keys dsops does not know is refused, naming them.

use dsops_proto::domain::{Step, StepOutcome};

use super::{Context, Step_, Strategy, discard, new_value, not_in_place, pending, promoted};
use crate::aws::{AwsError, AwsSpec, Iam, KEY_ID_FIELD};
use crate::executor::StepResult;
use crate::store::{Fields, Label};

/// The strategy for one user's keys.
#[derive(Debug)]
pub(crate) struct AwsKeys<'a> {
    pub(crate) spec: &'a AwsSpec,
    pub(crate) user: &'a str,
}

fn failure(error: AwsError) -> StepResult {
    let outcome = if error.retryable { StepOutcome::Retryable } else { StepOutcome::NotApplied };
    StepResult::failed(outcome, error.message)
}

fn key_id(fields: &Fields) -> Option<String> {
    fields.get(KEY_ID_FIELD).map(|id| id.expose().to_owned())
}

impl AwsKeys<'_> {
    async fn iam(&self, cx: &Context<'_>) -> Step_<Iam> {
        let admin = match &self.spec.admin {
            Some(admin) => {
                let refused = |why: String| StepResult::failed(StepOutcome::Refused, why);
                let store = super::AsyncStore(cx.executor.store(&admin.store).map_err(refused)?);
                Some(store.read(&admin.path, Label::Current).await?.ok_or_else(|| {
                    refused(format!("the AWS credential {admin} is not in the agent's store"))
                })?)
            }
            None => None,
        };
        Iam::new(self.spec, admin.as_ref()).await.map_err(failure)
    }

    /// Whether `fields`' key signs as this user.
    async fn signs_as_user(&self, iam: &Iam, fields: &Fields) -> Step_<Result<String, String>> {
        let arn = iam.user_arn(self.user).await.map_err(failure)?;
        match iam.identity(fields).await {
            Ok(found) if found == arn => Ok(Ok(found)),
            Ok(found) => Ok(Err(format!("the key signs as {found}, not as {arn}"))),
            Err(error) if error.retryable => Err(failure(error)),
            Err(error) => Ok(Err(error.message)),
        }
    }
}

impl Strategy for AwsKeys<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if cx.job.restore_previous {
            return Err(StepResult::failed(
                StepOutcome::Refused,
                "an AWS access key cannot be restored: its secret is shown once; rotate again instead",
            ));
        }
        if let Some((_, fingerprint)) = pending(cx).await? {
            return Ok(StepResult::ok(fingerprint, "the run's key is staged"));
        }
        let iam = self.iam(cx).await?;
        let labels = cx.store.read_labels(&cx.entry).await?;
        let known = |label: Label| labels.get(&label).and_then(|(_, fields)| key_id(fields));
        let (current, previous) = (known(Label::Current), known(Label::Previous));
        let mut notes = Vec::new();
        for key in iam.keys(self.user).await.map_err(failure)? {
            if Some(&key.id) == current.as_ref() {
                continue;
            }
            let ours_inactive = Some(&key.id) == previous.as_ref() && !key.active;
            // A retried stage finding a key made in the last hour, never used, that dsops does
            // not know: the leftover of its earlier attempt, which created the key and stopped
            // before storing it (its secret is lost).
            let now = chrono::Utc::now().timestamp();
            let orphan = cx.job.attempt > 1
                && Some(&key.id) != previous.as_ref()
                && key.created_secs.is_some_and(|at| now - at < 3600)
                && iam.last_used(&key.id).await.map_err(failure)?.is_none();
            if ours_inactive || orphan {
                iam.delete(self.user, &key.id).await.map_err(failure)?;
                notes.push(if ours_inactive {
                    format!("deleted {} (deactivated by the previous rotation)", key.id)
                } else {
                    format!("deleted {} (never used, unknown to dsops)", key.id)
                });
            } else {
                return Err(StepResult::failed(
                    StepOutcome::Refused,
                    format!(
                        "IAM user {} already holds a second access key, {} ({}), that dsops did not create or has used; IAM allows two keys per user, so delete or deactivate it first",
                        self.user,
                        key.id,
                        if key.active { "active" } else { "inactive" }
                    ),
                ));
            }
        }
        let fields = iam.create(self.user).await.map_err(failure)?;
        let staged = super::store_stage(cx, &fields, Some(self.user)).await?;
        let id = key_id(&fields).unwrap_or_default();
        notes.insert(0, format!("{}; created access key {id}", staged.detail));
        Ok(StepResult::ok(staged.fingerprint, notes.join("; ")))
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (_, fingerprint) = new_value(cx).await?;
        Ok(StepResult::ok(fingerprint, "the new key is active from its creation"))
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        let iam = self.iam(cx).await?;
        match self.signs_as_user(&iam, &fields).await? {
            Ok(arn) => Ok(StepResult::ok(
                fingerprint,
                format!("sts:GetCallerIdentity with the new key answered {arn}"),
            )),
            Err(why) => Err(StepResult::failed(StepOutcome::NotApplied, why)),
        }
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if promoted(cx).await?.is_none() {
            return Err(StepResult::failed(
                StepOutcome::NotApplied,
                format!("{}: run {} is not the current version", cx.job.store_ref, cx.job.run_id),
            ));
        }
        let previous = cx.store.read(&cx.entry, Label::Previous).await?;
        let Some(old) = previous.as_ref().and_then(key_id) else {
            return Ok(StepResult::ok(
                None,
                "no previous key known to dsops: nothing to deactivate",
            ));
        };
        let iam = self.iam(cx).await?;
        let used = iam.last_used(&old).await.map_err(failure)?;
        if iam.keys(self.user).await.map_err(failure)?.iter().any(|k| k.id == old) {
            iam.set_active(self.user, &old, false).await.map_err(failure)?;
        }
        let used = used.map_or_else(|| "never used".to_owned(), |at| format!("last used {at}"));
        Ok(StepResult::ok(
            None,
            format!("deactivated {old} ({used}); the next rotation deletes it"),
        ))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if let Some((fields, _)) = pending(cx).await?
            && let Some(id) = key_id(&fields)
        {
            let iam = self.iam(cx).await?;
            iam.delete(self.user, &id).await.map_err(failure)?;
        }
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => {
                let previous = cx.store.read(&cx.entry, Label::Previous).await?;
                let Some(old) = previous.as_ref().and_then(key_id) else {
                    return Ok(StepResult::ok(None, "nothing to deactivate"));
                };
                let iam = self.iam(cx).await?;
                let keys = iam.keys(self.user).await.map_err(failure)?;
                Ok(match keys.iter().find(|k| k.id == old) {
                    Some(key) if key.active => not_in_place(format!("{old} is still active")),
                    _ => StepResult::ok(None, format!("{old} is inactive or gone")),
                })
            }
            Step::Rollback => super::check_discarded(cx).await,
            _ => {
                let Ok((fields, fingerprint)) = new_value(cx).await else {
                    return Ok(not_in_place("nothing staged by this run"));
                };
                let iam = self.iam(cx).await?;
                Ok(match self.signs_as_user(&iam, &fields).await? {
                    Ok(_) => StepResult::ok(fingerprint, "the run's key signs as the user"),
                    Err(why) => not_in_place(why),
                })
            }
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        let iam = self.iam(cx).await?;
        Ok(self.signs_as_user(&iam, fields).await?.map(drop))
    }
}
