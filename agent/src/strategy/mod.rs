//! Rotation strategies: one file each, every one implementing the protocol's steps
//! ([`Strategy`]: stage, apply, verify, promote, retire, rollback, check) over the run's store
//! entry and, where the strategy has one, its target.
//!
//! | file            | strategy    | target                                                  |
//! |-----------------|-------------|---------------------------------------------------------|
//! | `random.rs`     | `random`    | none: the value lives in the store only                 |
//! | `immediate.rs`  | `immediate` | one user whose password changes in place                |
//! | `two_key.rs`    | `two-key`   | two users taking turns; the old one is disabled at retire |
//! | `overlap.rs`    | `overlap`   | one user holding the old and the new password until retire |
//! | `certificate.rs` | `overlap`  | certificates the agent issues; the old one stays valid until it expires |
//! | `aws_keys.rs`   | `overlap`   | an IAM user's two access keys; the old one is deactivated at retire |
//! | `http_keys.rs`  | `overlap`   | API keys whose calls the catalog describes; the old one revoked at retire |
//! | `hook.rs`       | `script`, `webhook` | the user's program or endpoint does the target's part |
//!
//! What every strategy shares lives here: staging a value (new or, for a rollback run, the
//! previous one), promoting, the store facts a check of stage or promote reads, and the rollback
//! of a first rotation, which keeps the run's value if it works ([`keep_pending`]).

mod aws_keys;
mod certificate;
mod hook;
mod http_keys;
mod immediate;
mod overlap;
mod random;
mod two_key;

use std::collections::BTreeMap;
use std::sync::Arc;

use dsops_proto::domain::{Fingerprint, Job, Step, StepOutcome};
use serde_json::Value as Json;

use crate::adapter::{Login, Target};
use crate::executor::{Detail, Executor, StepResult};
use crate::generate::{Generate, ValueFormat};
use crate::hook::HookSpec;
use crate::secret::SecretValue;
use crate::store::{Fields, Label, SecretStore, StoreError, VersionInfo};

pub(crate) use aws_keys::AwsKeys;
pub(crate) use certificate::Certificate;
pub(crate) use hook::Hook;
pub(crate) use http_keys::HttpKeys;
pub(crate) use immediate::Immediate;
pub(crate) use overlap::Overlap;
pub(crate) use random::Random;
pub(crate) use two_key::TwoKey;

/// A step's result, or the failure that ends it early.
pub(crate) type Step_<T> = Result<T, StepResult>;

/// How the run's strategy uses the target.
#[derive(Debug, Clone)]
pub(crate) enum Plan {
    /// No target (`random`).
    StoreOnly,
    /// One user whose password changes in place.
    Immediate { user: String },
    /// Two users taking turns.
    TwoKey { users: [String; 2] },
    /// One user holding two passwords during the grace period.
    Overlap { user: String },
    /// Certificates the agent issues or orders.
    Certificate(crate::certificate::CertificateSpec),
    /// An IAM user's access keys.
    AwsKeys { spec: crate::aws::AwsSpec, user: String },
    /// API keys through the generic HTTP adapter.
    HttpKeys {
        service: Box<crate::http_keys::HttpService>,
        api: Box<dsops_config::catalog::HttpApi>,
    },
    /// User code (a program or a webhook) applies, verifies and retires (see [`crate::hook`]).
    Hook(HookSpec),
}

/// Everything a step needs, resolved from the job.
pub(crate) struct Context<'a> {
    pub(crate) executor: &'a Executor,
    pub(crate) job: &'a Job,
    pub(crate) store: AsyncStore,
    pub(crate) entry: String,
    pub(crate) field: String,
    pub(crate) plan: Plan,
    pub(crate) target: Option<Arc<dyn Target>>,
    pub(crate) config: serde_json::Map<String, Json>,
}

/// The protocol's steps as one strategy performs them. `stage`, `promote` and the store checks
/// are the same for every strategy unless it says otherwise.
pub(crate) trait Strategy {
    /// Generate the new value (or take the previous one, for a rollback run) and stage it.
    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let fields = stage_fields(cx).await?;
        store_stage(cx, &fields, None).await
    }

    /// Make the target accept the staged value.
    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult>;

    /// Prove the staged value works with a fresh login or call.
    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult>;

    /// Make the staged value current in the store.
    async fn promote(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let info = cx.store.promote(&cx.entry, cx.job.run_id.as_str()).await?;
        Ok(StepResult::ok(
            info.fingerprints.get(&cx.field).copied(),
            Detail::own(format!("version {} is current", info.version)),
        ))
    }

    /// Revoke the old credential after the grace period.
    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult>;

    /// Undo what the run changed, so the current value is the working one.
    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult>;

    /// Read only: whether `checked`'s effect is in place (stage and promote read the store).
    async fn check(&self, cx: &Context<'_>, checked: Step) -> Step_<StepResult>;

    /// For the rollback of a first rotation: whether the run's staged value works
    /// (`Err(why)` when it definitely does not).
    async fn value_works(&self, cx: &Context<'_>, fields: &Fields) -> Step_<Result<(), String>>;
}

/// Performs the job's step with the run's strategy.
pub(crate) async fn perform(cx: &Context<'_>) -> Step_<StepResult> {
    match &cx.plan {
        Plan::StoreOnly => run(&Random, cx).await,
        Plan::Immediate { user } => run(&Immediate { user }, cx).await,
        Plan::TwoKey { users } => run(&TwoKey { users }, cx).await,
        Plan::Overlap { user } => run(&Overlap { user }, cx).await,
        Plan::Certificate(spec) => run(&Certificate { spec }, cx).await,
        Plan::AwsKeys { spec, user } => run(&AwsKeys { spec, user }, cx).await,
        Plan::HttpKeys { service, api } => run(&HttpKeys { service, api }, cx).await,
        Plan::Hook(spec) => run(&Hook { spec }, cx).await,
    }
}

async fn run<S: Strategy>(strategy: &S, cx: &Context<'_>) -> Step_<StepResult> {
    match cx.job.step {
        Step::Stage => strategy.stage(cx).await,
        Step::Apply => strategy.apply(cx).await,
        Step::Verify => strategy.verify(cx).await,
        Step::Promote => strategy.promote(cx).await,
        Step::Retire => strategy.retire(cx).await,
        Step::Rollback => {
            if cx.store.read(&cx.entry, Label::Current).await?.is_none() {
                return keep_pending(strategy, cx).await;
            }
            strategy.rollback(cx).await
        }
        Step::Check => match cx.job.checked_step {
            None | Some(Step::Check) => Err(StepResult::failed(
                StepOutcome::Refused,
                "a check must name the step it checks",
            )),
            Some(Step::Stage) => Ok(match pending(cx).await?.or(promoted(cx).await?) {
                Some((_, fingerprint)) => StepResult::ok(fingerprint, "the value is staged"),
                None => not_in_place("nothing staged by this run"),
            }),
            Some(Step::Promote) => Ok(match promoted(cx).await? {
                Some((_, fingerprint)) => {
                    StepResult::ok(fingerprint, "this run's version is current")
                }
                None => not_in_place("this run's version is not current"),
            }),
            Some(checked) => strategy.check(cx, checked).await,
        },
    }
}

/// A check's answer: the checked step's effect is not in place.
pub(crate) fn not_in_place(what: impl Into<Detail>) -> StepResult {
    StepResult::failed(StepOutcome::NotApplied, what)
}

/// The fields a stage step writes: a new value in the configured format, or for a rollback run
/// the previous version.
pub(crate) async fn stage_fields(cx: &Context<'_>) -> Step_<Fields> {
    if cx.job.restore_previous {
        return cx.store.read(&cx.entry, Label::Previous).await?.ok_or_else(|| {
            StepResult::failed(
                StepOutcome::Refused,
                format!("{}: no previous version to roll back to", cx.job.store_ref),
            )
        });
    }
    let refused =
        |e: crate::generate::FormatError| StepResult::failed(StepOutcome::Refused, e.to_string());
    let mut format = ValueFormat::parse(cx.job.value_format.as_deref()).map_err(refused)?;
    if let Some(charset) = cx.config.get("charset").and_then(Json::as_str) {
        format = format.with_charset(charset).map_err(refused)?;
    }
    let length = cx.config.get("length").and_then(Json::as_u64).map(|l| l as usize);
    let length = format.length(length).map_err(refused)?;
    let value = format
        .generate(length)
        .map_err(|e| StepResult::failed(StepOutcome::Retryable, e.to_string()))?;
    let mut fields = Fields::new();
    fields.insert(cx.field.clone(), value);
    Ok(fields)
}

/// Stages `fields` as this run's pending version; `user` names the user it is for, if any.
pub(crate) async fn store_stage(
    cx: &Context<'_>,
    fields: &Fields,
    user: Option<&str>,
) -> Step_<StepResult> {
    let (info, _) = cx.store.stage(&cx.entry, cx.job.run_id.as_str(), fields).await?;
    let user = user.map(|u| format!(" for user {u}")).unwrap_or_default();
    Ok(StepResult::ok(
        info.fingerprints.get(&cx.field).copied(),
        Detail::own(format!("staged version {}{user}", info.version)),
    ))
}

/// This run's version under `label`, with the fingerprint of the run's field.
async fn labelled(cx: &Context<'_>, label: Label) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
    let mut labels = cx.store.read_labels(&cx.entry).await?;
    Ok(labels
        .remove(&label)
        .filter(|(info, _)| info.run_id == cx.job.run_id.as_str())
        .map(|(info, fields)| (fields, info.fingerprints.get(&cx.field).copied())))
}

/// This run's pending fields, if staged and not yet promoted.
pub(crate) async fn pending(cx: &Context<'_>) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
    labelled(cx, Label::Pending).await
}

/// This run's version if it is current (promoted), with its fingerprint.
pub(crate) async fn promoted(cx: &Context<'_>) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
    labelled(cx, Label::Current).await
}

/// The run's new value: pending, or current if already promoted.
pub(crate) async fn new_value(cx: &Context<'_>) -> Step_<(Fields, Option<Fingerprint>)> {
    if let Some(found) = pending(cx).await? {
        return Ok(found);
    }
    if let Some(found) = promoted(cx).await? {
        return Ok(found);
    }
    Err(StepResult::failed(
        StepOutcome::NotApplied,
        format!("{}: nothing staged by run {}", cx.job.store_ref, cx.job.run_id),
    ))
}

/// The run's field of a version.
pub(crate) fn value_of(cx: &Context<'_>, fields: &Fields) -> Step_<SecretValue> {
    fields.get(&cx.field).cloned().ok_or_else(|| {
        StepResult::failed(
            StepOutcome::NotApplied,
            format!("{}: the version has no field {:?}", cx.job.store_ref, cx.field),
        )
    })
}

/// The run's target.
pub(crate) fn target_of<'c>(cx: &'c Context<'_>) -> Step_<&'c dyn Target> {
    cx.target
        .as_deref()
        .ok_or_else(|| StepResult::failed(StepOutcome::Refused, "no target for this strategy"))
}

/// Sets `user`'s password to the run's new value (and enables its login when `enable`).
pub(crate) async fn set_new_password(
    cx: &Context<'_>,
    user: &str,
    value: &SecretValue,
    fingerprint: Option<Fingerprint>,
    enable: bool,
) -> Step_<StepResult> {
    let target = target_of(cx)?;
    target.set_password(user, value).await?;
    if enable {
        target.set_login_enabled(user, true).await?;
    }
    Ok(StepResult::ok(fingerprint, Detail::own(format!("password of {user} set"))))
}

/// A fresh login as `user` with the run's new value.
pub(crate) async fn verify_login(
    cx: &Context<'_>,
    user: &str,
    value: &SecretValue,
    fingerprint: Option<Fingerprint>,
) -> Step_<StepResult> {
    match target_of(cx)?.login(user, value).await? {
        Login::Accepted => Ok(StepResult::ok(
            fingerprint,
            Detail::own(format!("fresh login as {user} with the new value worked")),
        )),
        Login::Refused => Err(StepResult::failed(
            StepOutcome::NotApplied,
            format!("the new value does not log in as {user}"),
        )),
    }
}

/// A check of apply or verify for a password target: does the new value log in as `user`?
pub(crate) async fn check_login(
    cx: &Context<'_>,
    user_of: impl Fn(&Fields) -> Option<String>,
) -> Step_<StepResult> {
    let (fields, fingerprint) = match new_value(cx).await {
        Ok(found) => found,
        Err(_) => return Ok(not_in_place("nothing staged by this run")),
    };
    let target = target_of(cx)?;
    let user = user_of(&fields).unwrap_or_default();
    Ok(match target.login(&user, &value_of(cx, &fields)?).await? {
        Login::Accepted => {
            StepResult::ok(fingerprint, Detail::own(format!("the new value logs in as {user}")))
        }
        Login::Refused => not_in_place(format!("the new value does not log in as {user}")),
    })
}

/// A check of a rollback for one user's password (`immediate`, `overlap`): this run's pending
/// value is gone and the current value logs in as `user`.
pub(crate) async fn check_rolled_back(cx: &Context<'_>, user: &str) -> Step_<StepResult> {
    if pending(cx).await?.is_some() {
        return Ok(not_in_place("this run's pending value is still there"));
    }
    if let Some(current) = cx.store.read(&cx.entry, Label::Current).await? {
        let value = value_of(cx, &current)?;
        if target_of(cx)?.login(user, &value).await? == Login::Refused {
            return Ok(not_in_place(format!("the current value does not log in as {user}")));
        }
    }
    Ok(StepResult::ok(None, "rolled back"))
}

/// Whether a version's value logs in as `user` (`Err(why)` when it definitely does not).
pub(crate) async fn logs_in(
    cx: &Context<'_>,
    user: &str,
    fields: &Fields,
) -> Step_<Result<(), String>> {
    let value = value_of(cx, fields)?;
    Ok(match target_of(cx)?.login(user, &value).await? {
        Login::Accepted => Ok(()),
        Login::Refused => Err(format!("the run's value does not log in as {user}")),
    })
}

/// A check of a rollback that changed nothing on the target: this run's pending value is gone.
pub(crate) async fn check_discarded(cx: &Context<'_>) -> Step_<StepResult> {
    Ok(if pending(cx).await?.is_some() {
        not_in_place("this run's pending value is still there")
    } else {
        StepResult::ok(None, "rolled back")
    })
}

/// Discards this run's pending value after the target's part of a rollback.
pub(crate) async fn discard(cx: &Context<'_>) -> Step_<StepResult> {
    cx.store.discard(&cx.entry, cx.job.run_id.as_str()).await?;
    Ok(StepResult::ok(None, "pending value discarded; the current value is the working one"))
}

/// Rollback of a secret that had no current value (its first rotation): there is nothing to go
/// back to, and apply may already have put the run's value on the target, so that value is the
/// one kept. It becomes current if it works (the receipt carries its fingerprint); if nothing
/// works the run stops for a person, with the value still pending. The pending value is never
/// discarded here and no hook is ever asked to restore an empty value.
pub(crate) async fn keep_pending<S: Strategy>(strategy: &S, cx: &Context<'_>) -> Step_<StepResult> {
    let Some((fields, fingerprint)) = pending(cx).await? else {
        if let Some((_, fingerprint)) = promoted(cx).await? {
            // An earlier attempt of this rollback already kept it.
            return Ok(StepResult::ok(fingerprint, "the run's value was kept as current"));
        }
        return Ok(StepResult::ok(None, "nothing was staged and there is no earlier value"));
    };
    match strategy.value_works(cx, &fields).await? {
        Ok(()) => {
            let info = cx.store.promote(&cx.entry, cx.job.run_id.as_str()).await?;
            Ok(StepResult::ok(
                info.fingerprints.get(&cx.field).copied().or(fingerprint),
                format!(
                    "no earlier value to restore: kept the run's value, which works, as current (version {})",
                    info.version
                ),
            ))
        }
        Err(why) => Err(StepResult::failed(
            StepOutcome::Refused,
            format!(
                "no earlier value to restore and {why}: nothing known works; the value stays pending in {} for a person to check (set a working one with dsops store put)",
                cx.job.store_ref
            ),
        )),
    }
}

/// The store, with each call run on the blocking pool: file stores fsync, which must not stall
/// the async workers that drive the other jobs.
#[derive(Debug, Clone)]
pub(crate) struct AsyncStore(pub(crate) Arc<dyn SecretStore>);

impl AsyncStore {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn SecretStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref())).await.unwrap_or_else(|error| {
            Err(StoreError::Io {
                path: "store".to_owned(),
                message: format!("store task failed: {error}"),
            })
        })
    }

    pub(crate) async fn read_labels(
        &self,
        entry: &str,
    ) -> Result<BTreeMap<Label, (VersionInfo, Fields)>, StoreError> {
        let entry = entry.to_owned();
        self.run(move |s| s.read_labels(&entry)).await
    }

    pub(crate) async fn read(
        &self,
        entry: &str,
        label: Label,
    ) -> Result<Option<Fields>, StoreError> {
        let entry = entry.to_owned();
        self.run(move |s| s.read(&entry, label)).await
    }

    async fn stage(
        &self,
        entry: &str,
        run_id: &str,
        fields: &Fields,
    ) -> Result<(VersionInfo, Fields), StoreError> {
        let (entry, run_id, fields) = (entry.to_owned(), run_id.to_owned(), fields.clone());
        self.run(move |s| s.stage(&entry, &run_id, &fields)).await
    }

    pub(crate) async fn promote(
        &self,
        entry: &str,
        run_id: &str,
    ) -> Result<VersionInfo, StoreError> {
        let (entry, run_id) = (entry.to_owned(), run_id.to_owned());
        self.run(move |s| s.promote(&entry, &run_id)).await
    }

    /// Sets one field of an entry's current version (an agent-held credential, never a secret
    /// being rotated).
    pub(crate) async fn put(
        &self,
        entry: &str,
        field: &str,
        value: SecretValue,
    ) -> Result<(), StoreError> {
        let (entry, field) = (entry.to_owned(), field.to_owned());
        self.run(move |s| s.put(&entry, &field, &value).map(drop)).await
    }

    async fn discard(&self, entry: &str, run_id: &str) -> Result<(), StoreError> {
        let (entry, run_id) = (entry.to_owned(), run_id.to_owned());
        self.run(move |s| s.discard(&entry, &run_id)).await
    }
}
