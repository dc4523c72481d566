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
    AgentId, Fingerprint, Job, MAX_RENEW_AHEAD, MAX_RETRY_AFTER, ReceiptBody, SignedReceipt,
    StepOutcome,
};
use serde_json::Value as Json;

use crate::adapter::{AdapterError, DatabaseTarget, ErrorClass, Target};
use crate::config::{AgentConfig, ServiceSpec, StoreSpec};
use crate::hook::{HookSpec, WebhookSpec};
use crate::identity::AgentIdentity;
use crate::store::{
    FileStore, FileStoreOptions, Label, SecretStore, SecretsManagerStore, StoreError,
};
use crate::strategy::{self, AsyncStore, Context, Plan, Step_};

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
    /// Whether [`detail`](Self::detail) is this agent's own text (see [`Detail`]): it is then
    /// sent as it is, without reading the job's entries to look for values in it.
    own_detail: bool,
    /// A failure: how long the target asked not to be called again (its `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// A certificate's stage: when its issuer suggests renewing it (ACME renewal information).
    pub renew_at: Option<SystemTime>,
}

/// A step's detail, and where its text came from. Text from anywhere else than this agent's own
/// code — a server's error, a program's output, an endpoint's answer, any `String` — may echo
/// what it was given, so before it is sent every form of every value the job could reach is
/// looked for in it and replaced (which reads the job's entries). This agent's own text needs no
/// such search: a literal (`&'static str`), or `Detail::own` for text composed here only of
/// names and numbers.
#[derive(Debug, Clone)]
pub struct Detail {
    text: String,
    own: bool,
}

impl Detail {
    /// Text this agent composed only of literals, numbers and names (users, versions, services):
    /// never a value, never text from a target. A reviewer checks each call.
    pub(crate) fn own(text: String) -> Detail {
        Detail { text, own: true }
    }
}

impl From<&'static str> for Detail {
    fn from(text: &'static str) -> Detail {
        Detail { text: text.to_owned(), own: true }
    }
}

impl From<String> for Detail {
    fn from(text: String) -> Detail {
        Detail { text, own: false }
    }
}

impl StepResult {
    pub(crate) fn ok(fingerprint: Option<Fingerprint>, detail: impl Into<Detail>) -> StepResult {
        let Detail { text, own } = detail.into();
        StepResult {
            outcome: StepOutcome::Succeeded,
            fingerprint,
            detail: text,
            own_detail: own,
            retry_after: None,
            renew_at: None,
        }
    }

    pub(crate) fn failed(outcome: StepOutcome, detail: impl Into<Detail>) -> StepResult {
        let Detail { text, own } = detail.into();
        StepResult {
            outcome,
            fingerprint: None,
            detail: text,
            own_detail: own,
            retry_after: None,
            renew_at: None,
        }
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

/// Runs steps for one agent.
#[derive(Debug)]
pub struct Executor {
    identity: AgentIdentity,
    config: AgentConfig,
    stores: Mutex<BTreeMap<String, Arc<dyn SecretStore>>>,
    targets: Mutex<BTreeMap<String, Arc<dyn Target>>>,
}

impl Executor {
    /// An executor for `identity` with the local `config`.
    pub fn new(identity: AgentIdentity, config: AgentConfig) -> Executor {
        Executor {
            identity,
            config,
            stores: Mutex::new(BTreeMap::new()),
            targets: Mutex::new(BTreeMap::new()),
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
    pub fn store(&self, name: &str) -> Result<Arc<dyn SecretStore>, String> {
        let mut stores = self.stores.lock().expect("store cache lock");
        if let Some(store) = stores.get(name) {
            return Ok(store.clone());
        }
        let spec = self
            .config
            .stores
            .get(name)
            .ok_or_else(|| format!("this agent has no store named {name:?}"))?;
        let store: Arc<dyn SecretStore> = match spec {
            StoreSpec::File { dir, key_file } => Arc::new(
                FileStore::open(
                    name,
                    &FileStoreOptions { dir: dir.clone(), key_file: key_file.clone() },
                )
                .map_err(|e| e.to_string())?,
            ),
            StoreSpec::AwsSecretsManager(options) => {
                Arc::new(SecretsManagerStore::open(name, options).map_err(|e| e.to_string())?)
            }
        };
        stores.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// The adapter for service `name`, for a health check's query; the error says why this
    /// agent cannot reach it.
    pub fn probe_target(&self, name: &str) -> Result<Arc<dyn Target>, String> {
        self.target(name).map_err(|refused| refused.detail)
    }

    /// The adapter for service `name` (opened once, with its admin credential from the store).
    fn target(&self, name: &str) -> Step_<Arc<dyn Target>> {
        if let Some(target) = self.targets.lock().expect("adapter cache lock").get(name) {
            return Ok(target.clone());
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
            tls_mode: spec.tls_mode.clone(),
            ca_file: spec.ca_file.clone(),
        };
        let target = crate::adapter::open(&spec.service_type, target).ok_or_else(|| {
            refused(format!("this agent has no adapter for service type {:?}", spec.service_type))
        })?;
        self.targets.lock().expect("adapter cache lock").insert(name.to_owned(), target.clone());
        Ok(target)
    }

    fn context<'a>(&'a self, job: &'a Job) -> Step_<Context<'a>> {
        let refused = |detail: String| StepResult::failed(StepOutcome::Refused, detail);
        let store = self.store(&job.store_ref.store).map_err(refused)?;
        // No field: the whole value, kept under the one field a file store holds it in.
        let field = job.store_ref.value_field().to_owned();
        let config: serde_json::Map<String, Json> = if job.config_json.trim().is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(&job.config_json)
                .map_err(|e| refused(format!("rotation config is not a JSON object: {e}")))?
        };
        let text = |key: &str| config.get(key).and_then(Json::as_str).map(str::to_owned);
        if let Some(why) =
            job.service_ref.as_ref().and_then(|s| self.config.unusable.get(&s.service))
        {
            return Err(refused(format!("this agent cannot use the service as configured: {why}")));
        }
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
            "overlap"
                if let Some(spec) = job
                    .service_ref
                    .as_ref()
                    .and_then(|service| self.config.certificates.get(&service.service)) =>
            {
                Plan::Certificate(spec.clone())
            }
            "overlap"
                if let Some((service, api)) = job.service_ref.as_ref().and_then(|service| {
                    let spec = self.config.http.get(&service.service)?;
                    let api = match &service.kind {
                        Some(kind) => spec.kinds.get(kind)?,
                        None if spec.kinds.len() == 1 => spec.kinds.values().next()?,
                        None => return None,
                    };
                    Some((spec, api))
                }) =>
            {
                Plan::HttpKeys { service: Box::new(service.clone()), api: Box::new(api.clone()) }
            }
            "overlap"
                if let Some(spec) = job
                    .service_ref
                    .as_ref()
                    .and_then(|service| self.config.aws.get(&service.service)) =>
            {
                Plan::AwsKeys {
                    spec: spec.clone(),
                    user: text("user_name").ok_or_else(|| {
                        refused("rotation.config.user_name (the IAM user) is required".to_owned())
                    })?,
                }
            }
            "overlap" => Plan::Overlap {
                user: text("username").ok_or_else(|| {
                    refused("rotation.config.username is required for overlap".to_owned())
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
        // A certificate is three fields, an access key two; with none named, the run's value is
        // the certificate, or the key's secret.
        let field = match &plan {
            Plan::Certificate(_) if job.store_ref.field.is_none() => {
                crate::certificate::CERT_FIELD.to_owned()
            }
            Plan::AwsKeys { .. } if job.store_ref.field.is_none() => {
                crate::aws::SECRET_FIELD.to_owned()
            }
            _ => field,
        };
        let target = match (&plan, &job.service_ref) {
            (
                Plan::StoreOnly
                | Plan::Hook(_)
                | Plan::Certificate(_)
                | Plan::AwsKeys { .. }
                | Plan::HttpKeys { .. },
                _,
            ) => None,
            (_, Some(service)) => Some(self.target(&service.service)?),
            (_, None) => return Err(refused(format!("strategy {} needs a service", job.strategy))),
        };
        Ok(Context {
            executor: self,
            job,
            store: AsyncStore(store),
            entry: job.store_ref.path.clone(),
            field,
            plan,
            target,
            config,
        })
    }

    /// Performs `job` and returns the signed receipt, in a span under the job's trace.
    pub async fn execute(&self, job: &Job) -> SignedReceipt {
        let span = dsops_telemetry::span(|| {
            tracing::info_span!(
                "agent.step",
                run_id = %job.run_id,
                step = %job.step,
                attempt = job.attempt,
                strategy = %job.strategy
            )
        });
        dsops_telemetry::set_parent(&span, job.trace_parent.as_deref());
        tracing::Instrument::instrument(self.perform(job), span).await
    }

    async fn perform(&self, job: &Job) -> SignedReceipt {
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
                Ok(cx) => strategy::perform(&cx).await.unwrap_or_else(|failure| failure),
                Err(failure) => failure,
            }
        };
        let mut result = result;
        result.detail = if result.own_detail {
            dsops_proto::domain::truncate_detail(&result.detail)
        } else {
            self.clean_detail(job, &result.detail).await
        };
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
        let performed_at = SystemTime::now();
        let body = ReceiptBody {
            run_id: job.run_id.clone(),
            generation: job.generation,
            step: job.step,
            target,
            value_fingerprint: result.fingerprint,
            performed_at,
            outcome: result.outcome,
            detail: result.detail,
            agent_id: AgentId::parse(&self.identity.agent_id, "agent_id")
                .expect("agent ids are validated at start"),
            attempt: job.attempt,
            retry_after: result.retry_after.map(|wait| wait.min(MAX_RETRY_AFTER)),
            // Never a time the control plane would refuse the receipt for.
            renew_at: result.renew_at.filter(|at| {
                at.duration_since(performed_at).map_or(true, |ahead| ahead <= MAX_RENEW_AHEAD)
            }),
        };
        SignedReceipt::sign(body, &self.identity.signing_key)
    }
}
