//! The executor: performs one step of a run and signs a receipt for it.
//!
//! Every step is idempotent for the same run id and generation: staging keeps the value a first
//! attempt staged, applying sets the same value again, promoting an already promoted version does
//! nothing. A `check` step only reads, and answers whether the checked step's effect is in place.
//! Errors name the target and the step, never a value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use dsops_proto::domain::{
    AgentId, Fingerprint, Job, ReceiptBody, SignedReceipt, Step, StepOutcome,
};
use serde_json::Value as Json;

use crate::adapter::{
    AdapterError, DatabaseTarget, ErrorClass, Login, MySqlAdapter, PasswordTarget, PostgresAdapter,
};
use crate::config::{AgentConfig, ServiceSpec, StoreSpec};
use crate::generate::ValueFormat;
use crate::hook::{HookSpec, WebhookSpec};
use crate::identity::AgentIdentity;
use crate::secret::SecretValue;
use crate::store::{Fields, FileStore, FileStoreOptions, Label, SecretStore, StoreError};

/// The field of a two-key entry that names the user the password belongs to.
pub const USERNAME_FIELD: &str = "username";

/// What a step came to, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The outcome class.
    pub outcome: StepOutcome,
    /// Fingerprint of the run's value, when known.
    pub fingerprint: Option<Fingerprint>,
    /// For people; never a value.
    pub detail: String,
}

impl StepResult {
    fn ok(fingerprint: Option<Fingerprint>, detail: impl Into<String>) -> StepResult {
        StepResult { outcome: StepOutcome::Succeeded, fingerprint, detail: detail.into() }
    }

    fn failed(outcome: StepOutcome, detail: impl Into<String>) -> StepResult {
        StepResult { outcome, fingerprint: None, detail: detail.into() }
    }
}

impl From<AdapterError> for StepResult {
    fn from(error: AdapterError) -> StepResult {
        let outcome = match error.class {
            ErrorClass::NotApplied => StepOutcome::NotApplied,
            ErrorClass::Retryable => StepOutcome::Retryable,
            ErrorClass::Indeterminate => StepOutcome::Indeterminate,
        };
        StepResult::failed(outcome, error.message)
    }
}

impl From<StoreError> for StepResult {
    fn from(error: StoreError) -> StepResult {
        let outcome = match error {
            StoreError::Io { .. } => StepOutcome::Retryable,
            StoreError::Missing { .. } => StepOutcome::NotApplied,
            StoreError::PendingConflict { .. } | StoreError::Corrupt { .. } => StepOutcome::Refused,
        };
        StepResult::failed(outcome, error.to_string())
    }
}

type Step_<T> = Result<T, StepResult>;

/// A database adapter of either protocol.
#[derive(Debug, Clone)]
enum Database {
    Postgres(PostgresAdapter),
    MySql(MySqlAdapter),
}

impl Database {
    async fn set_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        match self {
            Database::Postgres(a) => a.set_password(user, value).await,
            Database::MySql(a) => a.set_password(user, value).await,
        }
    }
    async fn login(&self, user: &str, value: &SecretValue) -> Result<Login, AdapterError> {
        match self {
            Database::Postgres(a) => a.login(user, value).await,
            Database::MySql(a) => a.login(user, value).await,
        }
    }
    async fn set_login_enabled(&self, user: &str, enabled: bool) -> Result<(), AdapterError> {
        match self {
            Database::Postgres(a) => a.set_login_enabled(user, enabled).await,
            Database::MySql(a) => a.set_login_enabled(user, enabled).await,
        }
    }
    async fn open_sessions(&self, user: &str) -> Result<u64, AdapterError> {
        match self {
            Database::Postgres(a) => a.open_sessions(user).await,
            Database::MySql(a) => a.open_sessions(user).await,
        }
    }
    async fn privileges(&self, user: &str) -> Result<Vec<String>, AdapterError> {
        match self {
            Database::Postgres(a) => a.privileges(user).await,
            Database::MySql(a) => a.privileges(user).await,
        }
    }
    async fn user_exists(&self, user: &str) -> Result<bool, AdapterError> {
        match self {
            Database::Postgres(a) => a.user_exists(user).await,
            Database::MySql(a) => a.user_exists(user).await,
        }
    }
}

/// The store, with each call run on the blocking pool: file stores fsync, which must not stall
/// the async workers that drive the other jobs.
#[derive(Debug, Clone)]
struct AsyncStore(Arc<FileStore>);

impl AsyncStore {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.unwrap_or_else(|error| {
            Err(StoreError::Io {
                path: "store".to_owned(),
                message: format!("store task failed: {error}"),
            })
        })
    }

    async fn read_labels(
        &self,
        entry: &str,
    ) -> Result<BTreeMap<Label, (crate::store::VersionInfo, Fields)>, StoreError> {
        let entry = entry.to_owned();
        self.run(move |s| s.read_labels(&entry)).await
    }

    async fn read(&self, entry: &str, label: Label) -> Result<Option<Fields>, StoreError> {
        let entry = entry.to_owned();
        self.run(move |s| s.read(&entry, label)).await
    }

    async fn stage(
        &self,
        entry: &str,
        run_id: &str,
        fields: &Fields,
    ) -> Result<(crate::store::VersionInfo, Fields), StoreError> {
        let (entry, run_id, fields) = (entry.to_owned(), run_id.to_owned(), fields.clone());
        self.run(move |s| s.stage(&entry, &run_id, &fields)).await
    }

    async fn promote(
        &self,
        entry: &str,
        run_id: &str,
    ) -> Result<crate::store::VersionInfo, StoreError> {
        let (entry, run_id) = (entry.to_owned(), run_id.to_owned());
        self.run(move |s| s.promote(&entry, &run_id)).await
    }

    async fn discard(&self, entry: &str, run_id: &str) -> Result<(), StoreError> {
        let (entry, run_id) = (entry.to_owned(), run_id.to_owned());
        self.run(move |s| s.discard(&entry, &run_id)).await
    }
}

/// Runs steps for one agent.
#[derive(Debug)]
pub struct Executor {
    identity: AgentIdentity,
    config: AgentConfig,
    stores: Mutex<BTreeMap<String, Arc<FileStore>>>,
    databases: Mutex<BTreeMap<String, Database>>,
}

/// How the run's strategy uses the target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// No target (`random`).
    StoreOnly,
    /// One user whose password changes in place.
    Immediate { user: String },
    /// Two users taking turns.
    TwoKey { users: [String; 2] },
    /// User code (a program or a webhook) applies, verifies and retires (see [`crate::hook`]).
    Hook(crate::hook::HookSpec),
}

/// Everything a step needs, resolved from the job.
struct Context<'a> {
    job: &'a Job,
    store: AsyncStore,
    entry: String,
    field: String,
    plan: Plan,
    database: Option<Database>,
    config: serde_json::Map<String, Json>,
}

impl Executor {
    /// An executor for `identity` with the local `config`.
    pub fn new(identity: AgentIdentity, config: AgentConfig) -> Executor {
        Executor {
            identity,
            config,
            stores: Mutex::new(BTreeMap::new()),
            databases: Mutex::new(BTreeMap::new()),
        }
    }

    /// Who runs the steps.
    pub fn identity(&self) -> &AgentIdentity {
        &self.identity
    }

    /// The local configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Opens (once) the store `name`.
    pub fn store(&self, name: &str) -> Result<Arc<FileStore>, String> {
        let mut stores = self.stores.lock().expect("store cache lock");
        if let Some(store) = stores.get(name) {
            return Ok(store.clone());
        }
        let spec = self
            .config
            .stores
            .get(name)
            .ok_or_else(|| format!("this agent has no store named {name:?}"))?;
        let store = match spec {
            StoreSpec::File { dir, key_file } => FileStore::open(
                name,
                &FileStoreOptions { dir: dir.clone(), key_file: key_file.clone() },
            )
            .map_err(|e| e.to_string())?,
        };
        let store = Arc::new(store);
        stores.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    fn database(&self, name: &str) -> Step_<Database> {
        if let Some(db) = self.databases.lock().expect("adapter cache lock").get(name) {
            return Ok(db.clone());
        }
        let refused = |detail: String| StepResult::failed(StepOutcome::Refused, detail);
        let spec: &ServiceSpec = self
            .config
            .services
            .get(name)
            .ok_or_else(|| refused(format!("this agent does not reach service {name:?}")))?;
        let store = self.store(&spec.admin.store).map_err(refused)?;
        let admin = store.read(&spec.admin.path, Label::Current)?.ok_or_else(|| {
            refused(format!(
                "admin credential {} is not in the store (dsops store put)",
                spec.admin
            ))
        })?;
        let get = |field: &str| {
            admin.get(field).cloned().ok_or_else(|| {
                refused(format!("admin credential {} has no field {field:?}", spec.admin))
            })
        };
        let target = DatabaseTarget {
            host: spec.host.clone(),
            port: spec.port,
            database: spec.database.clone(),
            admin_user: get("user")?.expose().to_owned(),
            admin_password: get("password")?,
            timeout: self.config.target_timeout,
            max_connections: self.config.max_target_connections,
        };
        let db = match spec.service_type.as_str() {
            "postgresql" => Database::Postgres(PostgresAdapter::new(target)),
            "mysql" | "mariadb" => Database::MySql(MySqlAdapter::new(target)),
            other => {
                return Err(refused(format!(
                    "this agent has no adapter for service type {other:?}"
                )));
            }
        };
        self.databases.lock().expect("adapter cache lock").insert(name.to_owned(), db.clone());
        Ok(db)
    }

    fn context<'a>(&self, job: &'a Job) -> Step_<Context<'a>> {
        let refused = |detail: String| StepResult::failed(StepOutcome::Refused, detail);
        let store = self.store(&job.store_ref.store).map_err(refused)?;
        let field = job
            .store_ref
            .field
            .clone()
            .ok_or_else(|| refused("the store reference names no field".to_owned()))?;
        let config: serde_json::Map<String, Json> = if job.config_json.trim().is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(&job.config_json)
                .map_err(|e| refused(format!("rotation config is not a JSON object: {e}")))?
        };
        let text = |key: &str| config.get(key).and_then(Json::as_str).map(str::to_owned);
        let plan = match job.strategy.as_str() {
            "random" => Plan::StoreOnly,
            strategy @ ("script" | "webhook") => {
                let service = job.service_ref.as_ref().ok_or_else(|| {
                    refused(format!("strategy {strategy} needs a service of type {strategy}"))
                })?;
                let spec = self.config.hooks.get(&service.service).cloned();
                match (strategy, spec) {
                    ("script", Some(spec @ HookSpec::Script(_)))
                    | ("webhook", Some(spec @ HookSpec::Webhook(_))) => Plan::Hook(spec),
                    _ => {
                        return Err(refused(format!(
                            "this agent has no {strategy} service {:?}; it calls only the programs and webhooks its own configuration names",
                            service.service
                        )));
                    }
                }
            }
            "immediate" => Plan::Immediate {
                user: text("username").ok_or_else(|| {
                    refused("rotation.config.username is required for immediate".to_owned())
                })?,
            },
            "two-key" => {
                let users: Vec<String> = config
                    .get("usernames")
                    .and_then(Json::as_array)
                    .map(|list| list.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                match <[String; 2]>::try_from(users) {
                    Ok(users) if users[0] != users[1] => Plan::TwoKey { users },
                    _ => {
                        return Err(refused(
                            "rotation.config.usernames must name two different users".to_owned(),
                        ));
                    }
                }
            }
            other => {
                return Err(refused(format!("strategy {other:?} is not supported by this agent")));
            }
        };
        let database = match (&plan, &job.service_ref) {
            (Plan::StoreOnly | Plan::Hook(_), _) => None,
            (_, Some(service)) => Some(self.database(&service.service)?),
            (_, None) => return Err(refused(format!("strategy {} needs a service", job.strategy))),
        };
        Ok(Context {
            job,
            store: AsyncStore(store),
            entry: job.store_ref.path.clone(),
            field,
            plan,
            database,
            config,
        })
    }

    /// Performs `job` and returns the signed receipt.
    pub async fn execute(&self, job: &Job) -> SignedReceipt {
        let started = std::time::Instant::now();
        let service = job.service_ref.as_ref().map(|s| s.service.as_str());
        let refusal = self
            .config
            .policy
            .refusal(&job.strategy, service)
            .or_else(|| self.config.entry_refusal(&job.store_ref, service));
        let result = if let Some(reason) = refusal {
            StepResult::failed(StepOutcome::Refused, reason)
        } else if let Some(late) = self.too_late(job) {
            StepResult::failed(StepOutcome::NotApplied, late)
        } else {
            match self.context(job) {
                Ok(cx) => self.perform(&cx).await.unwrap_or_else(|failure| failure),
                Err(failure) => failure,
            }
        };
        let mut result = result;
        result.detail = self.clean_detail(job, &result.detail).await;
        tracing::info!(
            run = %job.run_id,
            step = %job.step,
            attempt = job.attempt,
            outcome = ?result.outcome,
            detail = %result.detail,
            elapsed_us = started.elapsed().as_micros() as u64,
            "step done"
        );
        self.sign(job, result)
    }

    /// A detail fit to send: every form of every value the job could reach (its entry's versions,
    /// the admin credential of its service, a webhook's signing key) replaced by `***`, and cut
    /// to the receipt's limit. Details come from servers, programs and endpoints that may echo
    /// what they were given.
    async fn clean_detail(&self, job: &Job, detail: &str) -> String {
        if detail.is_empty() {
            return String::new();
        }
        let mut entries = Vec::new();
        let mut add = |store: &str, path: &str| {
            if let Ok(store) = self.store(store) {
                entries.push((store, path.to_owned()));
            }
        };
        add(&job.store_ref.store, &job.store_ref.path);
        if let Some(service) = &job.service_ref {
            if let Some(spec) = self.config.services.get(&service.service) {
                add(&spec.admin.store, &spec.admin.path);
            }
            if let Some(HookSpec::Webhook(WebhookSpec { auth: Some(auth), .. })) =
                self.config.hooks.get(&service.service)
            {
                add(&auth.store, &auth.path);
            }
        }
        let detail = detail.to_owned();
        let cleaned = tokio::task::spawn_blocking(move || {
            let mut values = Vec::new();
            for (store, path) in entries {
                for (_, (_, fields)) in store.read_labels(&path).unwrap_or_default() {
                    // User names are not secret, and details name them on purpose.
                    values.extend(
                        fields
                            .into_iter()
                            .filter(|(field, _)| !matches!(field.as_str(), "user" | USERNAME_FIELD))
                            .map(|(_, value)| value),
                    );
                }
            }
            crate::redact::redact(&detail, &values)
        })
        .await
        .unwrap_or_else(|_| "(detail withheld: it could not be checked for values)".to_owned());
        dsops_proto::domain::truncate_detail(&cleaned)
    }

    /// Why a job must not start now: its deadline has passed, or is nearer than one call to the
    /// target may take (it waited behind the agent's concurrency limit, or came late). Past the
    /// deadline the control plane has stopped waiting and will check instead; a statement sent
    /// now could land after that check concluded.
    fn too_late(&self, job: &Job) -> Option<String> {
        let left = job.deadline.duration_since(SystemTime::now()).unwrap_or_default();
        if left.is_zero() {
            return Some("the step's deadline passed before it started; not performed".to_owned());
        }
        (left < self.config.target_timeout).then(|| {
            format!(
                "only {:.1}s were left before the step's deadline, less than one call to the target may take ({:?}); not performed",
                left.as_secs_f64(),
                self.config.target_timeout
            )
        })
    }

    /// Signs a result for `job`.
    pub fn sign(&self, job: &Job, result: StepResult) -> SignedReceipt {
        let target =
            job.service_ref.as_ref().map_or_else(|| job.store_ref.to_string(), ToString::to_string);
        let body = ReceiptBody {
            run_id: job.run_id.clone(),
            generation: job.generation,
            step: job.step,
            target,
            value_fingerprint: result.fingerprint,
            performed_at: SystemTime::now(),
            outcome: result.outcome,
            detail: result.detail,
            agent_id: AgentId::parse(&self.identity.agent_id, "agent_id")
                .expect("agent ids are validated at start"),
            attempt: job.attempt,
        };
        SignedReceipt::sign(body, &self.identity.signing_key)
    }

    async fn perform(&self, cx: &Context<'_>) -> Step_<StepResult> {
        if let Plan::Hook(spec) = &cx.plan
            && !matches!(cx.job.step, Step::Stage | Step::Promote)
        {
            return self.hook_step(cx, spec).await;
        }
        match cx.job.step {
            Step::Stage => self.stage(cx).await,
            Step::Apply => self.apply(cx).await,
            Step::Verify => self.verify(cx).await,
            Step::Promote => self.promote(cx).await,
            Step::Retire => self.retire(cx).await,
            Step::Rollback => self.rollback(cx).await,
            Step::Check => self.check(cx).await,
        }
    }

    /// A step of the `script` or `webhook` strategy: the user's code does the target's part; the
    /// store's part (discarding on rollback) is done here.
    async fn hook_step(&self, cx: &Context<'_>, spec: &HookSpec) -> Step_<StepResult> {
        let step = cx.job.step;
        let checked = cx.job.checked_step;
        // Check of stage or promote: store facts, no program.
        if step == Step::Check && matches!(checked, Some(Step::Stage | Step::Promote)) {
            let found = match checked {
                Some(Step::Stage) => self.pending(cx).await?.or(self.promoted(cx).await?),
                _ => self.promoted(cx).await?,
            };
            return Ok(match found {
                Some((_, fingerprint)) => StepResult::ok(fingerprint, "in place"),
                None => StepResult::failed(StepOutcome::NotApplied, "not in place"),
            });
        }
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
                None => return self.keep_pending(cx).await,
            },
            Step::Retire => (value.unwrap_or_else(|| SecretValue::new(String::new())), previous),
            _ => (value.unwrap_or_else(|| SecretValue::new(String::new())), current),
        };
        let (outcome, detail) =
            self.call_hook(cx, spec, step, checked, &value, other.as_ref()).await?;
        if outcome != StepOutcome::Succeeded {
            return Ok(StepResult::failed(outcome, detail));
        }
        if step == Step::Rollback {
            cx.store.discard(&cx.entry, cx.job.run_id.as_str()).await?;
        }
        Ok(StepResult::ok(if step == Step::Rollback { None } else { fingerprint }, detail))
    }

    /// Calls the run's program or endpoint for `step` with `value` (and `other`: the current
    /// value, or for retire the previous one).
    async fn call_hook(
        &self,
        cx: &Context<'_>,
        spec: &HookSpec,
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
        let auth = self.hook_auth(spec)?;
        Ok(crate::hook::call(spec, &call, auth.as_ref()).await)
    }

    /// A webhook's request-signing secret, from the agent's own store.
    fn hook_auth(&self, spec: &HookSpec) -> Step_<Option<SecretValue>> {
        let HookSpec::Webhook(WebhookSpec { auth: Some(auth), .. }) = spec else {
            return Ok(None);
        };
        let refused = |detail: String| StepResult::failed(StepOutcome::Refused, detail);
        let store = self.store(&auth.store).map_err(refused)?;
        let field = auth.field.as_deref().unwrap_or("value");
        let fields = store.read(&auth.path, Label::Current)?;
        let secret = fields.and_then(|mut f| f.remove(field)).ok_or_else(|| {
            refused(format!(
                "the webhook's auth_store {auth} is not in the store (dsops store put)"
            ))
        })?;
        Ok(Some(secret))
    }

    /// This run's version under `label`, with the fingerprint of the run's field.
    async fn labelled(
        &self,
        cx: &Context<'_>,
        label: Label,
    ) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
        let mut labels = cx.store.read_labels(&cx.entry).await?;
        Ok(labels
            .remove(&label)
            .filter(|(info, _)| info.run_id == cx.job.run_id.as_str())
            .map(|(info, fields)| (fields, info.fingerprints.get(&cx.field).copied())))
    }

    /// This run's pending fields, if staged and not yet promoted.
    async fn pending(&self, cx: &Context<'_>) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
        self.labelled(cx, Label::Pending).await
    }

    /// Whether this run's version is current (promoted), with its fingerprint.
    async fn promoted(&self, cx: &Context<'_>) -> Step_<Option<(Fields, Option<Fingerprint>)>> {
        self.labelled(cx, Label::Current).await
    }

    /// The run's new value: pending, or current if already promoted.
    async fn new_value(&self, cx: &Context<'_>) -> Step_<(Fields, Option<Fingerprint>)> {
        if let Some(found) = self.pending(cx).await? {
            return Ok(found);
        }
        if let Some(found) = self.promoted(cx).await? {
            return Ok(found);
        }
        Err(StepResult::failed(
            StepOutcome::NotApplied,
            format!("{}: nothing staged by run {}", cx.job.store_ref, cx.job.run_id),
        ))
    }

    fn value_of(cx: &Context<'_>, fields: &Fields) -> Step_<SecretValue> {
        fields.get(&cx.field).cloned().ok_or_else(|| {
            StepResult::failed(
                StepOutcome::NotApplied,
                format!("{}: the version has no field {:?}", cx.job.store_ref, cx.field),
            )
        })
    }

    /// The user a version's password belongs to.
    fn user_of(cx: &Context<'_>, fields: &Fields) -> Option<String> {
        match &cx.plan {
            Plan::StoreOnly | Plan::Hook(_) => None,
            Plan::Immediate { user } => Some(user.clone()),
            Plan::TwoKey { users } => fields
                .get(USERNAME_FIELD)
                .map(|u| u.expose().to_owned())
                .filter(|u| users.contains(u)),
        }
    }

    fn database_of<'c>(cx: &'c Context<'_>) -> Step_<&'c Database> {
        cx.database
            .as_ref()
            .ok_or_else(|| StepResult::failed(StepOutcome::Refused, "no target for this strategy"))
    }

    async fn stage(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let mut fields = Fields::new();
        if cx.job.restore_previous {
            fields = cx.store.read(&cx.entry, Label::Previous).await?.ok_or_else(|| {
                StepResult::failed(
                    StepOutcome::Refused,
                    format!("{}: no previous version to roll back to", cx.job.store_ref),
                )
            })?;
        } else {
            let mut format = ValueFormat::parse(cx.job.value_format.as_deref())
                .map_err(|e| StepResult::failed(StepOutcome::Refused, e.to_string()))?;
            if let Some(charset) = cx.config.get("charset").and_then(Json::as_str) {
                format = format
                    .with_charset(charset)
                    .map_err(|e| StepResult::failed(StepOutcome::Refused, e.to_string()))?;
            }
            let length = cx.config.get("length").and_then(Json::as_u64).map(|l| l as usize);
            let length = format
                .length(length)
                .map_err(|e| StepResult::failed(StepOutcome::Refused, e.to_string()))?;
            let value = format
                .generate(length)
                .map_err(|e| StepResult::failed(StepOutcome::Retryable, e.to_string()))?;
            fields.insert(cx.field.clone(), value);
            if let Plan::TwoKey { users } = &cx.plan {
                let db = Self::database_of(cx)?;
                for user in users {
                    if !db.user_exists(user).await? {
                        return Err(StepResult::failed(
                            StepOutcome::Refused,
                            format!("two-key: user {user:?} does not exist on the target"),
                        ));
                    }
                }
                let (a, b) = (db.privileges(&users[0]).await?, db.privileges(&users[1]).await?);
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
                let inactive = if active.as_deref() == Some(users[1].as_str()) {
                    &users[0]
                } else {
                    &users[1]
                };
                fields.insert(USERNAME_FIELD.to_owned(), SecretValue::new(inactive.clone()));
            }
        }
        let (info, staged) = cx.store.stage(&cx.entry, cx.job.run_id.as_str(), &fields).await?;
        let user = Self::user_of(cx, &staged).map(|u| format!(" for user {u}")).unwrap_or_default();
        Ok(StepResult::ok(
            info.fingerprints.get(&cx.field).copied(),
            format!("staged version {}{user}", info.version),
        ))
    }

    /// The run's new credential: its user, value and fingerprint.
    async fn new_credential(
        &self,
        cx: &Context<'_>,
    ) -> Step_<(String, SecretValue, Option<Fingerprint>)> {
        let (fields, fingerprint) = self.new_value(cx).await?;
        let value = Self::value_of(cx, &fields)?;
        let user = Self::user_of(cx, &fields).ok_or_else(|| {
            StepResult::failed(
                StepOutcome::Refused,
                "the staged version names no user of this strategy",
            )
        })?;
        Ok((user, value, fingerprint))
    }

    async fn apply(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (user, value, fingerprint) = self.new_credential(cx).await?;
        let db = Self::database_of(cx)?;
        db.set_password(&user, &value).await?;
        if matches!(cx.plan, Plan::TwoKey { .. }) {
            db.set_login_enabled(&user, true).await?;
        }
        Ok(StepResult::ok(fingerprint, format!("password of {user} set")))
    }

    async fn verify(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let (user, value, fingerprint) = self.new_credential(cx).await?;
        let db = Self::database_of(cx)?;
        match db.login(&user, &value).await? {
            Login::Accepted => Ok(StepResult::ok(
                fingerprint,
                format!("fresh login as {user} with the new value worked"),
            )),
            Login::Refused => Err(StepResult::failed(
                StepOutcome::NotApplied,
                format!("the new value does not log in as {user}"),
            )),
        }
    }

    async fn promote(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let info = cx.store.promote(&cx.entry, cx.job.run_id.as_str()).await?;
        Ok(StepResult::ok(
            info.fingerprints.get(&cx.field).copied(),
            format!("version {} is current", info.version),
        ))
    }

    async fn retire(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let Plan::TwoKey { users } = &cx.plan else {
            return Ok(StepResult::ok(
                None,
                "nothing to revoke: the old value was replaced in place",
            ));
        };
        let (current, _) = self.promoted(cx).await?.ok_or_else(|| {
            StepResult::failed(
                StepOutcome::NotApplied,
                format!("{}: run {} is not the current version", cx.job.store_ref, cx.job.run_id),
            )
        })?;
        let Some(new_user) = Self::user_of(cx, &current) else {
            return Err(StepResult::failed(
                StepOutcome::Refused,
                "the current version names no user of this strategy",
            ));
        };
        // The user that is not current is the old one (also when the previous version predates
        // dsops and names no user).
        let old_user = if new_user == users[0] { users[1].clone() } else { users[0].clone() };
        let db = Self::database_of(cx)?;
        let started = std::time::Instant::now();
        let mut open = db.open_sessions(&old_user).await?;
        while open > 0 && started.elapsed() < self.config.session_wait {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            open = db.open_sessions(&old_user).await?;
        }
        db.set_login_enabled(&old_user, false).await?;
        let sessions = if open == 0 {
            "no sessions open".to_owned()
        } else {
            format!("{open} session(s) still open after {:?}", self.config.session_wait)
        };
        Ok(StepResult::ok(None, format!("login of {old_user} disabled ({sessions})")))
    }

    async fn rollback(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let current = cx.store.read(&cx.entry, Label::Current).await?;
        if current.is_none() {
            return self.keep_pending(cx).await;
        }
        if let (Plan::Immediate { user }, Some(current)) = (&cx.plan, &current) {
            let db = Self::database_of(cx)?;
            let value = Self::value_of(cx, current)?;
            if db.login(user, &value).await? == Login::Refused {
                db.set_password(user, &value).await?;
                if db.login(user, &value).await? == Login::Refused {
                    return Err(StepResult::failed(
                        StepOutcome::Retryable,
                        format!(
                            "{user}: the current value still does not log in after restoring it"
                        ),
                    ));
                }
            }
        }
        if let (Plan::TwoKey { .. }, Some(current)) = (&cx.plan, &current)
            && let Some(user) = Self::user_of(cx, current)
        {
            // The active user keeps working; make sure a half-done earlier retire did not lock it.
            Self::database_of(cx)?.set_login_enabled(&user, true).await?;
        }
        cx.store.discard(&cx.entry, cx.job.run_id.as_str()).await?;
        Ok(StepResult::ok(None, "pending value discarded; the current value is the working one"))
    }

    /// Rollback of a secret that had no current value (its first rotation): there is nothing to
    /// go back to, and apply may already have put the run's value on the target, so that value
    /// is the one kept. It becomes current if it works (the receipt carries its fingerprint);
    /// if nothing works the run stops for a person, with the value still pending. The pending
    /// value is never discarded here and no hook is ever asked to restore an empty value.
    async fn keep_pending(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let Some((fields, fingerprint)) = self.pending(cx).await? else {
            if let Some((_, fingerprint)) = self.promoted(cx).await? {
                // An earlier attempt of this rollback already kept it.
                return Ok(StepResult::ok(fingerprint, "the run's value was kept as current"));
            }
            return Ok(StepResult::ok(None, "nothing was staged and there is no earlier value"));
        };
        let works = match &cx.plan {
            Plan::StoreOnly => Ok(true),
            Plan::Immediate { .. } | Plan::TwoKey { .. } => {
                let value = Self::value_of(cx, &fields)?;
                let user = Self::user_of(cx, &fields).ok_or_else(|| {
                    StepResult::failed(StepOutcome::Refused, "the staged version names no user")
                })?;
                let db = Self::database_of(cx)?;
                if matches!(cx.plan, Plan::TwoKey { .. })
                    && db.login(&user, &value).await? == Login::Refused
                {
                    // Apply may have stopped between setting the password and enabling login.
                    db.set_login_enabled(&user, true).await?;
                }
                match db.login(&user, &value).await? {
                    Login::Accepted => Ok(true),
                    Login::Refused => Err(format!("the run's value does not log in as {user}")),
                }
            }
            Plan::Hook(spec) => {
                let value = Self::value_of(cx, &fields)?;
                match self.call_hook(cx, spec, Step::Verify, None, &value, None).await? {
                    (StepOutcome::Succeeded, _) => Ok(true),
                    (StepOutcome::NotApplied, detail) => {
                        Err(format!("the run's value does not work: {detail}"))
                    }
                    (outcome, detail) => {
                        return Err(StepResult::failed(
                            if outcome == StepOutcome::Refused {
                                StepOutcome::Refused
                            } else {
                                StepOutcome::Retryable
                            },
                            format!("could not tell whether the run's value works: {detail}"),
                        ));
                    }
                }
            }
        };
        match works {
            Ok(_) => {
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

    async fn check(&self, cx: &Context<'_>) -> Step_<StepResult> {
        let checked = cx.job.checked_step.unwrap_or(Step::Check);
        let not_in_place = |what: String| Ok(StepResult::failed(StepOutcome::NotApplied, what));
        match checked {
            Step::Stage => match self.pending(cx).await?.or(self.promoted(cx).await?) {
                Some((_, fingerprint)) => Ok(StepResult::ok(fingerprint, "the value is staged")),
                None => not_in_place("nothing staged by this run".to_owned()),
            },
            Step::Apply | Step::Verify => {
                let (fields, fingerprint) = match self.new_value(cx).await {
                    Ok(found) => found,
                    Err(_) => return not_in_place("nothing staged by this run".to_owned()),
                };
                let db = Self::database_of(cx)?;
                let user = Self::user_of(cx, &fields).unwrap_or_default();
                match db.login(&user, &Self::value_of(cx, &fields)?).await? {
                    Login::Accepted => {
                        Ok(StepResult::ok(fingerprint, format!("the new value logs in as {user}")))
                    }
                    Login::Refused => {
                        not_in_place(format!("the new value does not log in as {user}"))
                    }
                }
            }
            Step::Promote => match self.promoted(cx).await? {
                Some((_, fingerprint)) => {
                    Ok(StepResult::ok(fingerprint, "this run's version is current"))
                }
                None => not_in_place("this run's version is not current".to_owned()),
            },
            Step::Retire => {
                let Plan::TwoKey { users } = &cx.plan else {
                    return Ok(StepResult::ok(None, "nothing to revoke"));
                };
                let Some((current, _)) = self.promoted(cx).await? else {
                    return not_in_place("this run's version is not current".to_owned());
                };
                let new_user = Self::user_of(cx, &current).unwrap_or_default();
                let old_user =
                    if new_user == users[0] { users[1].clone() } else { users[0].clone() };
                let previous = cx.store.read(&cx.entry, Label::Previous).await?.unwrap_or_default();
                let Ok(old_value) = Self::value_of(cx, &previous) else {
                    return not_in_place(format!("cannot tell whether {old_user} is disabled"));
                };
                let db = Self::database_of(cx)?;
                match db.login(&old_user, &old_value).await? {
                    Login::Refused => {
                        Ok(StepResult::ok(None, format!("{old_user} can no longer log in")))
                    }
                    Login::Accepted => not_in_place(format!("{old_user} can still log in")),
                }
            }
            Step::Rollback => {
                if self.pending(cx).await?.is_some() {
                    return not_in_place("this run's pending value is still there".to_owned());
                }
                if let (Plan::Immediate { user }, Some(current)) =
                    (&cx.plan, cx.store.read(&cx.entry, Label::Current).await?)
                {
                    let db = Self::database_of(cx)?;
                    if db.login(user, &Self::value_of(cx, &current)?).await? == Login::Refused {
                        return not_in_place(format!(
                            "the current value does not log in as {user}"
                        ));
                    }
                }
                Ok(StepResult::ok(None, "rolled back"))
            }
            Step::Check => Err(StepResult::failed(
                StepOutcome::Refused,
                "a check must name the step it checks",
            )),
        }
    }
}
