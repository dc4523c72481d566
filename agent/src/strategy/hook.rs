//! `script` and `webhook`: the user's program or endpoint does the target's part of apply,
//! verify, retire, rollback and their checks (see [`crate::hook`] for the call); the store's part
//! (staging, promoting, discarding on rollback) is done here as for every strategy.

use dsops_proto::domain::{Step, StepOutcome};

use super::{Context, Step_, Strategy, discard, keep_pending, value_of};
use crate::executor::StepResult;
use crate::hook::{HookSpec, WebhookSpec};
use crate::secret::SecretValue;
use crate::store::{Fields, Label};

/// The hook strategy calling `spec`.
#[derive(Debug)]
pub(crate) struct Hook<'a> {
    pub(crate) spec: &'a HookSpec,
}

impl Hook<'_> {
    /// A step done by the user's code: the run's value (and the other one it needs: the current
    /// value, or for retire the previous one) handed to the program or endpoint.
    async fn hook_step(&self, cx: &Context<'_>, checked: Option<Step>) -> Step_<StepResult> {
        let step = cx.job.step;
        let labels = cx.store.read_labels(&cx.entry).await?;
        let mine = |label: Label| {
            labels.get(&label).filter(|(info, _)| info.run_id == cx.job.run_id.as_str()).cloned()
        };
        let current = labels.get(&Label::Current).and_then(|(_, f)| f.get(&cx.field).cloned());
        let previous = labels.get(&Label::Previous).and_then(|(_, f)| f.get(&cx.field).cloned());
        let new = mine(Label::Pending).or_else(|| mine(Label::Current));
        let (value, fingerprint) = match (&new, step) {
            (Some((info, fields)), _) => {
                (fields.get(&cx.field).cloned(), info.fingerprints.get(&cx.field).copied())
            }
            (None, Step::Rollback) => (None, None),
            (None, _) => {
                return Err(StepResult::failed(
                    StepOutcome::NotApplied,
                    format!("{}: nothing staged by run {}", cx.job.store_ref, cx.job.run_id),
                ));
            }
        };
        // Rollback restores the current value; retire revokes the previous one (promotion made
        // the new value current).
        let (value, other) = match step {
            // Nothing to restore: the run's value is kept, never an empty one handed over.
            Step::Rollback => match current.clone() {
                Some(current) => (current, value),
                None => return keep_pending(self, cx).await,
            },
            Step::Retire => (value.unwrap_or_else(|| SecretValue::new(String::new())), previous),
            _ => (value.unwrap_or_else(|| SecretValue::new(String::new())), current),
        };
        let (outcome, detail) = self.call(cx, step, checked, &value, other.as_ref()).await?;
        if outcome != StepOutcome::Succeeded {
            return Ok(StepResult::failed(outcome, detail));
        }
        if step == Step::Rollback {
            discard(cx).await?;
            return Ok(StepResult::ok(None, detail));
        }
        Ok(StepResult::ok(fingerprint, detail))
    }

    /// Calls the run's program or endpoint for `step` with `value` (and `other`).
    async fn call(
        &self,
        cx: &Context<'_>,
        step: Step,
        checked: Option<Step>,
        value: &SecretValue,
        other: Option<&SecretValue>,
    ) -> Step_<(StepOutcome, String)> {
        let name = step.to_string();
        let checked_name = checked.map(|c| c.to_string());
        let call = crate::hook::HookCall {
            step: &name,
            checked_step: checked_name.as_deref(),
            run_id: cx.job.run_id.as_str(),
            generation: cx.job.generation.get(),
            attempt: cx.job.attempt,
            env: &cx.job.env,
            key: &cx.job.key,
            value,
            current: other,
            changes: matches!(step, Step::Apply | Step::Retire | Step::Rollback),
        };
        let auth = self.auth(cx)?;
        Ok(crate::hook::call(self.spec, &call, auth.as_ref()).await)
    }

    /// A webhook's request-signing secret, from the agent's own store.
    fn auth(&self, cx: &Context<'_>) -> Step_<Option<SecretValue>> {
        let HookSpec::Webhook(WebhookSpec { auth: Some(auth), .. }) = self.spec else {
            return Ok(None);
        };
        let refused = |detail: String| StepResult::failed(StepOutcome::Refused, detail);
        let store = cx.executor.store(&auth.store).map_err(refused)?;
        let field = auth.field.as_deref().unwrap_or("value");
        let fields = crate::store::SecretStore::read(&*store, &auth.path, Label::Current)?;
        let secret = fields.and_then(|mut f| f.remove(field)).ok_or_else(|| {
            refused(format!(
                "the webhook's auth_store {auth} is not in the store (dsops store put)"
            ))
        })?;
        Ok(Some(secret))
    }
}

impl Strategy for Hook<'_> {
    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        self.hook_step(cx, None).await
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        self.hook_step(cx, None).await
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        self.hook_step(cx, None).await
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        self.hook_step(cx, None).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        self.hook_step(cx, Some(checked)).await
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        let value = value_of(cx, fields)?;
        match self.call(cx, Step::Verify, None, &value, None).await? {
            (StepOutcome::Succeeded, _) => Ok(Ok(())),
            (StepOutcome::NotApplied, detail) => {
                Ok(Err(format!("the run's value does not work: {detail}")))
            }
            (outcome, detail) => Err(StepResult::failed(
                if outcome == StepOutcome::Refused {
                    StepOutcome::Refused
                } else {
                    StepOutcome::Retryable
                },
                format!("could not tell whether the run's value works: {detail}"),
            )),
        }
    }
}
