//! `overlap` for API keys described in the catalog (`http` of a credential kind): stage calls
//! `create` (the provider makes the key; its secret and id are staged), verify calls `verify`
//! with the new key, retire calls `revoke` on the old one after the grace period (or leaves it
//! to expire when the provider sets an expiry itself), and a rollback revokes the run's key.

use dsops_config::catalog::HttpApi;
use dsops_proto::domain::{Step, StepOutcome};

use super::{Context, Step_, Strategy, discard, new_value, not_in_place, pending, promoted};
use crate::executor::StepResult;
use crate::http_keys::{Answer, HttpService, ID_FIELD, Vars, extract, send};
use crate::secret::SecretValue;
use crate::store::{Fields, Label};

/// The strategy for one kind of one service.
#[derive(Debug)]
pub(crate) struct HttpKeys<'a> {
    pub(crate) service: &'a HttpService,
    pub(crate) api: &'a HttpApi,
}

fn refused(why: impl Into<crate::executor::Detail>) -> StepResult {
    StepResult::failed(StepOutcome::Refused, why)
}

/// A call's answer that is not "done", as a step's failure.
fn failed(answer: Answer) -> StepResult {
    match answer {
        Answer::Done(_) => StepResult::failed(StepOutcome::Retryable, "unexpected"),
        Answer::NotApplied(why) => StepResult::failed(StepOutcome::NotApplied, why),
        Answer::Retry(why) => StepResult::failed(StepOutcome::Retryable, why),
    }
}

impl HttpKeys<'_> {
    fn base(&self) -> &str {
        self.service.endpoint.as_deref().unwrap_or(&self.api.base_url)
    }

    /// The placeholders every call may use: the agent's credential, the settings, the variable's
    /// `rotation.config`, and the current version's key and id.
    async fn vars(&self, cx: &Context<'_>) -> Step_<Vars> {
        let mut vars = Vars::default();
        for (name, value) in &self.service.settings {
            vars.set(&format!("setting.{name}"), SecretValue::new(value.clone()));
        }
        for (name, value) in &cx.config {
            let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
            vars.set(&format!("config.{name}"), SecretValue::new(text));
        }
        let admin = match &self.service.admin {
            Some(admin) => {
                let store = super::AsyncStore(cx.executor.store(&admin.store).map_err(refused)?);
                let fields = store.read(&admin.path, Label::Current).await?;
                let value = fields.and_then(|mut f| f.remove(admin.value_field()));
                Some(value.ok_or_else(|| {
                    refused(format!("the provider credential {admin} is not in the agent's store"))
                })?)
            }
            None => std::env::var(&self.service.admin_env).ok().map(SecretValue::new),
        };
        if let Some(admin) = admin {
            if let Some(app_id) = self.service.settings.get("app_id") {
                let jwt =
                    crate::http_keys::github_app_jwt(app_id, admin.expose()).map_err(refused)?;
                vars.set("github_app_jwt", SecretValue::new(jwt));
            }
            vars.set("admin", admin);
        }
        if let Some(current) = cx.store.read(&cx.entry, Label::Current).await? {
            self.put(&mut vars, "current", cx, &current);
        }
        Ok(vars)
    }

    /// Sets `{<name>}` and `{<name>_id}` from a version's fields.
    fn put(&self, vars: &mut Vars, name: &str, cx: &Context<'_>, fields: &Fields) {
        if let Some(value) = fields.get(&cx.field) {
            vars.set(name, value.clone());
        }
        if let Some(id) = fields.get(ID_FIELD) {
            vars.set(&format!("{name}_id"), id.clone());
        }
    }

    fn client(&self, cx: &Context<'_>) -> Step_<reqwest::Client> {
        crate::http_keys::client(self.service, cx.executor.config().target_timeout).map_err(refused)
    }

    /// Calls `verify` with `fields` as the new key: `Ok(Ok)` it works, `Ok(Err)` refused.
    async fn works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        let mut vars = self.vars(cx).await?;
        self.put(&mut vars, "new", cx, fields);
        let answer = send(&self.client(cx)?, self.base(), "verify", &self.api.verify, &vars)
            .await
            .map_err(refused)?;
        match answer {
            Answer::Done(_) => Ok(Ok(())),
            Answer::NotApplied(why) => Ok(Err(why)),
            retry @ Answer::Retry(_) => Err(failed(retry)),
        }
    }

    /// Calls `revoke` on the key in `fields` (`{old}`, `{old_id}`); `false` when the kind has
    /// no revoke call. A key already gone (404, 410) counts as revoked.
    async fn revoke(&self, cx: &Context<'_>, fields: &Fields) -> Step_<bool> {
        let Some(call) = &self.api.revoke else { return Ok(false) };
        let mut vars = self.vars(cx).await?;
        self.put(&mut vars, "old", cx, fields);
        match send(&self.client(cx)?, self.base(), "revoke", call, &vars).await.map_err(refused)? {
            Answer::Done(_) => Ok(true),
            Answer::NotApplied(why) if why.contains("status 404") || why.contains("status 410") => {
                Ok(true)
            }
            other => Err(failed(other)),
        }
    }
}

impl Strategy for HttpKeys<'_> {
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if cx.job.restore_previous {
            return Err(refused(
                "an API key cannot be restored: the provider shows a secret once; rotate again instead",
            ));
        }
        if let Some((_, fingerprint)) = pending(cx).await? {
            return Ok(StepResult::ok(fingerprint, "the run's key is staged"));
        }
        let vars = self.vars(cx).await?;
        let answer = send(&self.client(cx)?, self.base(), "create", &self.api.create, &vars)
            .await
            .map_err(refused)?;
        let Answer::Done(body) = answer else { return Err(failed(answer)) };
        let pointer = self.api.create.value.as_deref().unwrap_or("/secret");
        let value = extract(&body, pointer).ok_or_else(|| {
            StepResult::failed(
                StepOutcome::Indeterminate,
                format!("create answered without a key at {pointer}: a key may exist that dsops does not hold; check the provider"),
            )
        })?;
        let mut fields = Fields::new();
        fields.insert(cx.field.clone(), SecretValue::new(value));
        let id = self.api.create.id.as_deref().and_then(|p| extract(&body, p));
        if let Some(id) = &id {
            fields.insert(ID_FIELD.to_owned(), SecretValue::new(id.clone()));
        }
        let staged = super::store_stage(cx, &fields, None).await?;
        Ok(StepResult::ok(
            staged.fingerprint,
            format!("{}; the provider created the key", staged.detail),
        ))
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (_, fingerprint) = new_value(cx).await?;
        Ok(StepResult::ok(fingerprint, "the provider's key is active from its creation"))
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (fields, fingerprint) = new_value(cx).await?;
        match self.works(cx, &fields).await? {
            Ok(()) => Ok(StepResult::ok(fingerprint, "the provider accepted the new key")),
            Err(why) => Err(StepResult::failed(
                StepOutcome::NotApplied,
                format!("the new key is refused: {why}"),
            )),
        }
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if promoted(cx).await?.is_none() {
            return Err(StepResult::failed(
                StepOutcome::NotApplied,
                "this run's key is not current",
            ));
        }
        let Some(previous) = cx.store.read(&cx.entry, Label::Previous).await? else {
            return Ok(StepResult::ok(None, "no previous key known to dsops"));
        };
        Ok(StepResult::ok(
            None,
            if self.revoke(cx, &previous).await? {
                "the old key is revoked"
            } else {
                "no revoke call for this kind: the old key expires as the provider set it"
            },
        ))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if let Some((fields, _)) = pending(cx).await? {
            self.revoke(cx, &fields).await?;
        }
        discard(cx).await
    }

    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult> {
        match checked {
            Step::Retire => {
                let Some(previous) = cx.store.read(&cx.entry, Label::Previous).await? else {
                    return Ok(StepResult::ok(None, "nothing to revoke"));
                };
                if self.api.revoke.is_none() {
                    return Ok(StepResult::ok(None, "nothing to revoke: the old key expires"));
                }
                Ok(match self.works(cx, &previous).await? {
                    Ok(()) => not_in_place("the old key still works"),
                    Err(_) => StepResult::ok(None, "the old key is refused"),
                })
            }
            Step::Rollback => super::check_discarded(cx).await,
            _ => {
                let Ok((fields, fingerprint)) = new_value(cx).await else {
                    return Ok(not_in_place("nothing staged by this run"));
                };
                Ok(match self.works(cx, &fields).await? {
                    Ok(()) => StepResult::ok(fingerprint, "the provider accepts the run's key"),
                    Err(why) => not_in_place(why),
                })
            }
        }
    }

    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>> {
        self.works(cx, fields).await
    }
}
