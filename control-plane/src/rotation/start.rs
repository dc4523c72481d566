//! Starting runs: what the admin API's rotation calls and the scheduler do ([`super::report`]
//! reports them).
//! Runs are resolved from the stored configuration, so a cluster rotates exactly what was
//! applied, whichever node answers. Errors are domain errors ([`RotationError`]); the admin
//! service turns them into statuses.

use chrono::{DateTime, Utc};
use dsops_proto::ErrorCode;
use dsops_proto::wire::admin as wire;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::control::{ControlPlane, WriteError};
use crate::rotation::spec::{self, SpecError};
use dsops_config::config::{CatalogFiles, Loaded, ResolvedSecret, load_with};
use dsops_proto::domain::timestamp_ms as timestamp;
use dsops_proto::domain::{RotateRequest, RotateSelector};
use dsops_state::{Command, Outcome, Run, RunSpec, StoredConfig, secret_id};

pub(super) fn now_utc() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(dsops_proto::now_ms() as i64).unwrap_or_default()
}

/// Why a rotation request (or the scheduler's start) could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// Refused here: the request or the state does not allow it.
    #[error("{message}")]
    Refused {
        /// Which class of refusal.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// The replicated write or read failed (not the leader, refused by the state machine,
    /// unavailable).
    #[error(transparent)]
    Write(#[from] WriteError),
}

impl RotationError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> RotationError {
        RotationError::Refused { code, message: message.into() }
    }

    /// The gRPC status for this error (a `not_leader` keeps the leader's address).
    pub fn to_status(&self) -> tonic::Status {
        match self {
            RotationError::Refused { code, message } => code.to_status(message.clone()),
            RotationError::Write(error) => error.to_status(),
        }
    }
}

impl From<RotationError> for tonic::Status {
    fn from(error: RotationError) -> tonic::Status {
        error.to_status()
    }
}

pub(super) fn failed(error: SpecError) -> RotationError {
    RotationError::new(ErrorCode::FailedPrecondition, error.0)
}

/// Loads the stored configuration (validated when it was stored; a failure here means the
/// catalog bundled with this release disagrees with it).
fn loaded(stored: &StoredConfig) -> Result<Loaded, RotationError> {
    load_with(&stored.config_yaml, &stored.config_path, CatalogFiles::Given(&stored.catalog_files))
        .map_err(|d| {
            let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
            RotationError::new(
                ErrorCode::FailedPrecondition,
                format!("the stored configuration no longer validates:\n{}", lines.join("\n")),
            )
        })
}

/// The stored configuration's version and its validated form. Validation (YAML, catalog,
/// resolution) runs once per stored version; later requests reuse it.
pub(crate) async fn current_config(
    control: &ControlPlane,
) -> Result<(u64, Arc<Loaded>), RotationError> {
    let version =
        control.read_current(|s| s.config_version()).await.map_err(RotationError::from)?;
    if version == 0 {
        return Err(RotationError::new(
            ErrorCode::FailedPrecondition,
            "no configuration is stored yet; run `dsops apply -f dsops.yaml` first",
        ));
    }
    config_at(control, version).await
}

/// The configuration this node has applied, without a raft round (for the leader's own loops,
/// which act on the state they have); `None` before one is stored.
pub(crate) async fn applied_config(
    control: &ControlPlane,
) -> Result<Option<(u64, Arc<Loaded>)>, RotationError> {
    let version = control.read_local(|s| s.config_version()).await;
    if version == 0 {
        return Ok(None);
    }
    config_at(control, version).await.map(Some)
}

/// Stored version `version` validated (the current one when the history no longer holds it),
/// from the cache or loaded into it.
pub(crate) async fn config_at(
    control: &ControlPlane,
    version: u64,
) -> Result<(u64, Arc<Loaded>), RotationError> {
    if let Some(hit) = control.cached_config(version) {
        return Ok((version, hit));
    }
    let loading = control.config_loading().await;
    if let Some(hit) = control.cached_config(version) {
        return Ok((version, hit));
    }
    // The version asked for while the history still holds it, the current one otherwise.
    let stored = control
        .read_local(|s| {
            s.configs.iter().find(|c| c.version == version).or(s.current_config()).cloned()
        })
        .await
        .ok_or_else(|| {
            RotationError::new(
                ErrorCode::Unavailable,
                "the stored configuration disappeared; try again",
            )
        })?;
    if let Some(hit) = control.cached_config(stored.version) {
        return Ok((stored.version, hit));
    }
    // Off the async workers: the raft tasks on this node keep their heartbeats meanwhile. The
    // load caches its result before it lets go of the lock, so whoever waited finds it.
    let version = stored.version;
    let cache = control.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let _loading = loading;
        let loaded = Arc::new(loaded(&stored)?);
        cache.cache_config(version, loaded.clone());
        Ok::<_, RotationError>(loaded)
    })
    .await
    .map_err(|e| {
        RotationError::new(ErrorCode::Internal, format!("loading the configuration: {e}"))
    })??;
    Ok((version, loaded))
}

/// A run's summary for the API.
pub(crate) fn summary(run: &Run, control: &ControlPlane, with_steps: bool) -> wire::RunSummary {
    let waiting = !run.phase.is_terminal()
        && run.phase != dsops_state::RunPhase::AwaitingApproval
        && run.dispatched.is_none()
        && !control.agents().has_agent(&run.spec);
    wire::RunSummary {
        run_id: run.id.clone(),
        secret: Some(wire::SecretKey { env: run.env.clone(), key: run.key.clone() }),
        generation: run.generation,
        phase: run.phase.to_wire(),
        requested_at: Some(timestamp(run.requested_at_ms)),
        finished_at: run.finished_at_ms.map(timestamp),
        detail: if run.phase == dsops_state::RunPhase::Completed {
            String::new()
        } else {
            run.last_error.clone()
        },
        strategy: run.spec.strategy.clone(),
        next_step: run.step.map_or(0, |s| s.to_wire()),
        attempt: run.attempt,
        segment: run.spec.segment.clone(),
        waiting_for_agent: waiting,
        not_before: (run.not_before_ms > dsops_proto::now_ms() && !run.phase.is_terminal())
            .then(|| timestamp(run.not_before_ms)),
        steps: if with_steps {
            run.receipts
                .iter()
                .map(|r| wire::RunStep {
                    step: r.step.to_wire(),
                    checked_step: r.checked_step.map_or(0, |s| s.to_wire()),
                    attempt: r.attempt,
                    result: r.outcome.to_wire(),
                    agent_id: r.agent_id.clone(),
                    detail: r.detail.clone(),
                    at: Some(timestamp(r.at_ms)),
                    fingerprint: r.fingerprint.clone().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        },
        rollback: run.restore_previous,
        not_started: wire::NotStarted::Unspecified.into(),
        requested_by: run.requested_by.clone(),
        reason: run.reason.clone(),
        approval: approval_of(run),
        store: run.spec.store_ref.clone(),
        target: run.spec.service_ref.clone().unwrap_or_default(),
    }
}

/// A run's approval for the API.
pub(crate) fn approval_of(run: &Run) -> Option<wire::Approval> {
    let (approval, rule) = (run.approval.as_ref()?, run.spec.approval.as_ref());
    let decision = |d: &dsops_state::ApprovalDecision| wire::ApprovalDecision {
        operator: d.operator.clone(),
        approve: d.approve,
        reason: d.reason.clone(),
        signed_at: Some(timestamp(d.signed_at_ms)),
        recorded_at: Some(timestamp(d.recorded_at_ms)),
        signature_hex: d.signature_hex.clone(),
        certificate_pem: d.certificate_pem.clone(),
    };
    Some(wire::Approval {
        required: rule.map_or(0, |r| r.required),
        approvers: rule.map(|r| r.approvers.clone()).unwrap_or_default(),
        expires_at: Some(timestamp(approval.expires_at_ms)),
        plan_digest: approval.plan_digest.clone(),
        round: approval.round,
        decisions: approval.decisions.iter().map(decision).collect(),
        granted_at: approval.granted_at_ms.map(timestamp),
        config_version: run.spec.config_version,
    })
}

/// A run id derived from the request id, so a retried request names the same runs.
pub(crate) fn run_id(request_id: &str, env: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{request_id}\n{env}\n{key}").as_bytes());
    format!("run-{}", &dsops_proto::hex(&digest)[..20])
}

/// Which secrets a rotate request names.
fn select<'a>(
    loaded: &'a Loaded,
    secrets: &std::collections::BTreeMap<String, dsops_state::SecretRecord>,
    request: &RotateRequest,
) -> Result<Vec<ResolvedSecret<'a>>, RotationError> {
    let now = now_utc();
    match &request.selector {
        RotateSelector::Secret(secret) => {
            Ok(vec![spec::find(loaded, &secret.env, &secret.key).map_err(failed)?])
        }
        RotateSelector::AllDueInEnv(env) => {
            if !loaded.config.envs.contains_key(env) {
                return Err(failed(spec::unknown_env(loaded, env)));
            }
            Ok(loaded
                .resolved()
                .into_iter()
                .filter(|item| item.secret.env == *env && item.strategy.is_some())
                .filter(|item| {
                    let record = secrets.get(&secret_id(env, &item.secret.key));
                    request.force || spec::next_due(item, record, now).is_some_and(|due| due <= now)
                })
                .collect())
        }
        RotateSelector::ServicePolicy { service, policy } => {
            let Some(configured) = loaded.config.services.get(&service.service) else {
                return Err(RotationError::new(
                    ErrorCode::FailedPrecondition,
                    format!("no service {:?} in the configuration", service.service),
                ));
            };
            // `svc://<type>/<service>`: the type written must be the service's.
            if let Some(written) = &service.service_type
                && !dsops_config::config::service_type_is(written, &configured.service_type)
            {
                return Err(RotationError::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "{service} names type {written:?}, but service {:?} is of type {:?}",
                        service.service, configured.service_type
                    ),
                ));
            }
            let chosen: Vec<ResolvedSecret<'a>> = loaded
                .resolved()
                .into_iter()
                .filter(|item| {
                    item.secret.service.as_ref().is_some_and(|s| {
                        s.service == service.service
                            && (service.kind.is_none() || s.kind == service.kind)
                    }) && item.policy.is_some_and(|(name, _)| name == policy)
                })
                .collect();
            if chosen.is_empty() {
                return Err(RotationError::new(
                    ErrorCode::NotFound,
                    format!("no variable rotates against {service} with policy {policy:?}"),
                ));
            }
            Ok(chosen)
        }
    }
}

/// Refuses rotations that governance would stop. `--force` overrides maintenance windows only;
/// approval is never skipped (a run that needs it waits in `AwaitingApproval`), and the embedded
/// default, which has one local user and no approvers, refuses such a secret.
pub(super) fn gate(
    loaded: &Loaded,
    item: &ResolvedSecret<'_>,
    start: &Start,
) -> Result<(), String> {
    let name = format!("{}/{}", item.secret.env, item.secret.key);
    if start.break_glass && start.local {
        return Err(format!(
            "{name}: breaking glass needs a cluster: its review is closed by another operator, and the embedded default has one local user"
        ));
    }
    if item.approval.is_some() && start.local && !start.restore_previous {
        return Err(format!(
            "{name} requires approval, which needs a cluster: the embedded default has one local user and no approvers (see docs/governance.md)"
        ));
    }
    if start.break_glass {
        return Ok(());
    }
    let now = now_utc();
    // A blackout beats a window, and --force: only breaking glass rotates during one.
    if let Some((blackout, until)) =
        dsops_config::time::blackout_at(&loaded.config.rotation.blackouts, &item.secret.env, now)
    {
        return Err(format!(
            "{name} is in blackout {} until {}; only --break-glass rotates during a blackout",
            blackout.name,
            until.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    if start.force {
        return Ok(());
    }
    if !item.windows.is_empty() && !item.windows.iter().any(|w| w.contains(now)) {
        return Err(format!(
            "{name} is outside its maintenance windows; --force rotates it anyway (audited)"
        ));
    }
    Ok(())
}

/// Starts runs (`restore_previous` for a rollback).
pub(crate) async fn rotate(
    control: &ControlPlane,
    actor: &str,
    local: bool,
    request: RotateRequest,
    restore_previous: bool,
) -> Result<wire::RotateResponse, RotationError> {
    let request_id = request.request_id.as_str().to_owned();
    let (config_version, loaded) = current_config(control).await?;
    let secrets = control.read_local(|s| s.secrets.clone()).await;
    let mut chosen = select(&loaded, &secrets, &request)?;
    if !request.only.is_empty() {
        chosen.retain(|item| {
            request.only.contains(&dsops_proto::domain::SecretKey {
                env: item.secret.env.clone(),
                key: item.secret.key.clone(),
            })
        });
    }
    let mut reason = if restore_previous { "rollback".to_owned() } else { "manual".to_owned() };
    if request.force {
        reason.push_str(", forced");
    }
    if request.break_glass {
        reason.push_str(", break-glass");
    }
    if !request.reason.is_empty() {
        reason.push_str(&format!(": {}", request.reason));
    }
    let chosen = chosen
        .into_iter()
        .map(|item| {
            let id = run_id(&request_id, &item.secret.env, &item.secret.key);
            (item, id)
        })
        .collect();
    let start = Start {
        force: request.force,
        dry_run: request.dry_run,
        single: matches!(request.selector, RotateSelector::Secret(_)),
        restore_previous,
        reason,
        local,
        break_glass: request.break_glass,
        wave: false,
    };
    let Started { runs, in_flight } =
        start_runs(control, actor, &loaded, config_version, chosen, &start).await?;
    Ok(wire::RotateResponse { runs, in_flight })
}

/// What [`start_runs`] did.
pub(crate) struct Started {
    /// A row per secret: the run started, or why not (`Skipped`), or what would start.
    pub runs: Vec<wire::RunSummary>,
    /// Runs already in flight for chosen secrets, which got no second run.
    pub in_flight: Vec<wire::RunSummary>,
}

/// The run in flight for `env/key`, if any (when one started between the look at the state and
/// the write).
async fn in_flight(control: &ControlPlane, env: &str, key: &str) -> Option<wire::RunSummary> {
    control
        .read_local(|s| {
            let active = s.secrets.get(&secret_id(env, key))?.active_run.as_ref()?;
            s.runs.get(active).map(|run| summary(run, control, false))
        })
        .await
}

/// How [`start_runs`] starts them.
pub(crate) struct Start {
    /// Past maintenance windows (never past approval): audited.
    pub force: bool,
    /// Only say what would start.
    pub dry_run: bool,
    /// One secret was named: a refusal is the request's error, not a skipped row.
    pub single: bool,
    /// A rollback to the previous version.
    pub restore_previous: bool,
    /// Why, for the run and the audit log (`manual`, `scheduled (0 3 * * 0)`).
    pub reason: String,
    /// Asked by the embedded default's local user (who cannot have a run approved).
    pub local: bool,
    /// Broken glass: past approval and windows, opening a review.
    pub break_glass: bool,
    /// The promotion loop starting a wave's next stage (no redirect to the first stage).
    pub wave: bool,
}

/// Starts a run for each secret under the given run id (derived from a request id, so a retried
/// request, or a second leader's scheduler, names the same runs and each starts once).
pub(crate) async fn start_runs(
    control: &ControlPlane,
    actor: &str,
    loaded: &Loaded,
    config_version: u64,
    chosen: Vec<(ResolvedSecret<'_>, String)>,
    start: &Start,
) -> Result<Started, RotationError> {
    let single = start.single;
    let mut runs = Vec::new();
    let mut busy = Vec::new();
    let mut writes = Vec::new();
    // The runs in flight for the chosen secrets, in one look at the state.
    let ids: Vec<String> =
        chosen.iter().map(|(item, _)| secret_id(&item.secret.env, &item.secret.key)).collect();
    let mut running: std::collections::HashMap<String, wire::RunSummary> = control
        .read_local(|s| {
            ids.into_iter()
                .filter_map(|id| {
                    let active = s.secrets.get(&id)?.active_run.as_ref()?;
                    let run = s.runs.get(active)?;
                    Some((id, summary(run, control, false)))
                })
                .collect()
        })
        .await;
    for (item, id) in chosen {
        let (env, key) = (item.secret.env.clone(), item.secret.key.clone());
        let spec = match spec::run_spec(loaded, &item, config_version)
            .and_then(|s| gate(loaded, &item, start).map(|()| s).map_err(SpecError))
        {
            // A rollback restores the value that worked before: it needs no approval. Breaking
            // glass skips it (and opens a review).
            Ok(spec) if start.restore_previous || start.break_glass => {
                RunSpec { approval: None, ..spec }
            }
            Ok(spec) => spec,
            Err(error) if single => return Err(failed(error)),
            Err(error) => {
                runs.push(skipped(&env, &key, &error.0));
                continue;
            }
        };
        let (env, key, spec, id) = match super::promotion::route(
            control,
            loaded,
            config_version,
            &env,
            &key,
            spec,
            &id,
            start,
        )
        .await
        {
            Ok(super::promotion::Route::Run { env, key, spec, id, note }) => {
                runs.extend(note.map(|n| *n));
                (env, key, *spec, id)
            }
            Ok(super::promotion::Route::Waiting(row)) => {
                runs.push(*row);
                continue;
            }
            Err(error) if single => return Err(failed(error)),
            Err(error) => {
                runs.push(skipped(&env, &key, &error.0));
                continue;
            }
        };
        if start.dry_run {
            runs.push(wire::RunSummary {
                run_id: String::new(),
                secret: Some(wire::SecretKey { env, key }),
                not_started: wire::NotStarted::DryRun.into(),
                strategy: spec.strategy.clone(),
                segment: spec.segment.clone(),
                ..wire::RunSummary::default()
            });
            continue;
        }
        // One run at a time per secret: the one in flight is reported, not refused.
        if let Some(run) = running.remove(&secret_id(&env, &key)) {
            busy.push(run);
            continue;
        }
        let command = Command::RequestRun {
            run_id: id.clone(),
            env: env.clone(),
            key: key.clone(),
            spec,
            restore_previous: start.restore_previous,
            reason: start.reason.clone(),
            break_glass: start.break_glass,
            trace_parent: dsops_telemetry::traceparent(),
        };
        let write_id = format!("rotate-{}", &id[4..]);
        runs.push(wire::RunSummary::default());
        writes.push((runs.len() - 1, env, key, write_id, command));
    }
    // All at once: the proposer batches concurrent writes into few raft entries.
    let results = futures::future::join_all(
        writes
            .iter()
            .map(|(_, _, _, write_id, command)| control.write(actor, write_id, command.clone())),
    )
    .await;
    let mut taken = Vec::new();
    for ((slot, env, key, _, _), result) in writes.iter().zip(results) {
        runs[*slot] = match result {
            Ok(response) => match response.outcome {
                Outcome::RunStarted { run_id, .. } => {
                    match control.read_local(|s| s.runs.get(&run_id).cloned()).await {
                        Some(run) => summary(&run, control, false),
                        None => skipped(env, key, "the run ended and was dropped from history"),
                    }
                }
                Outcome::WaveQueued { line, wave } => super::promotion::waiting(
                    env,
                    key,
                    format!(
                        "queued: wave {wave} of line {line} is past this stage; a new wave starts when it ends"
                    ),
                ),
                other => {
                    return Err(RotationError::new(
                        ErrorCode::Internal,
                        format!("unexpected outcome {other:?}"),
                    ));
                }
            },
            // Another run started between the look above and this write.
            Err(WriteError::Rejected { code, message }) => match in_flight(control, env, key).await
            {
                Some(run) if code == ErrorCode::Conflict => {
                    busy.push(run);
                    taken.push(*slot);
                    continue;
                }
                _ if !single => skipped(env, key, &message),
                _ => return Err(WriteError::Rejected { code, message }.into()),
            },
            Err(error) => return Err(error.into()),
        };
    }
    for slot in taken.into_iter().rev() {
        runs.remove(slot);
    }
    control.agents().wake();
    Ok(Started { runs, in_flight: busy })
}

fn skipped(env: &str, key: &str, why: &str) -> wire::RunSummary {
    wire::RunSummary {
        secret: Some(wire::SecretKey { env: env.to_owned(), key: key.to_owned() }),
        not_started: wire::NotStarted::Skipped.into(),
        detail: why.to_owned(),
        ..wire::RunSummary::default()
    }
}
