//! Promotion on the control plane: where a rotate request of a line's stage goes (`route`),
//! the leader's loop that starts each later stage once the previous one has soaked ([`run`]),
//! and `dsops promotion status` (`status`). The state machine judges every start in log time
//! (see `dsops_state`'s promotion rules); this module only asks at the right moment.
//!
//! | a request for | with no wave under way | with a wave under way |
//! |---|---|---|
//! | the first stage | starts a wave | runs if the first stage is not done yet; else queues a new wave behind this one |
//! | a later stage | starts a wave at the first stage (a later stage never jumps ahead) | joins: it starts by itself after the earlier stages and their soaks |
//!
//! Break-glass and rollbacks go straight to the secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsops_config::config::Loaded;
use dsops_config::config::promotion::{GateAction, HealthProbe};
use dsops_proto::wire::admin as wire;
use dsops_state::{PromotionLine, RunSpec, secret_id, utc_text as time};
use tokio::sync::watch;

use super::spec::{self, SpecError};
use super::start::{self, Start, run_id};
use crate::control::ControlPlane;

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(1);

/// Where a start of `env/key` goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// Start this secret's run (perhaps the line's first stage instead of the one asked for),
    /// with a row for the one asked for when it was redirected.
    Run {
        env: String,
        key: String,
        spec: Box<RunSpec>,
        id: String,
        note: Option<Box<wire::RunSummary>>,
    },
    /// Nothing starts now: the row says what it waits for.
    Waiting(Box<wire::RunSummary>),
}

/// A row for a secret that waits in a wave.
pub(crate) fn waiting(env: &str, key: &str, detail: String) -> wire::RunSummary {
    wire::RunSummary {
        secret: Some(wire::SecretKey { env: env.to_owned(), key: key.to_owned() }),
        not_started: wire::NotStarted::Waiting.into(),
        detail,
        ..wire::RunSummary::default()
    }
}

/// Where a request to start `env/key` (its run `id`, planned as `spec`) goes.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn route(
    control: &ControlPlane,
    loaded: &Loaded,
    version: u64,
    env: &str,
    key: &str,
    spec: RunSpec,
    id: &str,
    start: &Start,
) -> Result<Route, SpecError> {
    let run = |spec: RunSpec| Route::Run {
        env: env.to_owned(),
        key: key.to_owned(),
        spec: Box::new(spec),
        id: id.to_owned(),
        note: None,
    };
    let Some(p) = spec.promotion.clone() else { return Ok(run(spec)) };
    if p.stage == 0 || start.wave || start.break_glass || start.restore_previous {
        return Ok(run(spec));
    }
    let (line, gate) = control
        .read_local(|s| {
            let line = s.promotions.get(&p.line).cloned().unwrap_or_default();
            let gate = dsops_state::gates_block(s, &line, p.stage as usize);
            (line, gate)
        })
        .await;
    if line.halted.is_some() {
        // The state machine refuses it, saying why.
        return Ok(run(spec));
    }
    if line.active() {
        if line.stages.get(p.stage as usize).is_some_and(|s| s.run_id.is_some()) {
            return Ok(run(spec));
        }
        let detail = format!(
            "joins wave {} of line {}: {}; it starts by itself",
            line.wave,
            p.line,
            waits_for(&line, p.stage as usize, dsops_proto::now_ms(), gate.as_ref())
        );
        return Ok(Route::Waiting(Box::new(waiting(env, key, detail))));
    }
    // No wave under way: one starts at the first stage, and this stage follows.
    let Some((first_env, first_key)) = p.stages.first().and_then(|s| s.split_once('/')) else {
        return Ok(run(spec));
    };
    let item = spec::find(loaded, first_env, first_key)?;
    let first = spec::run_spec(loaded, &item, version)?;
    start::gate(loaded, &item, start).map_err(SpecError)?;
    let detail = format!(
        "starts wave {} of line {} at {first_env}/{first_key}; {env}/{key} follows after the earlier stages and their soaks",
        line.wave + 1,
        p.line
    );
    Ok(Route::Run {
        env: first_env.to_owned(),
        key: first_key.to_owned(),
        spec: Box::new(first),
        id: run_id(id, first_env, first_key),
        note: Some(Box::new(waiting(env, key, detail))),
    })
}

/// What stage `stage` of `line`'s wave waits for (`gate`: what its gates say, once the stage
/// before it has soaked).
fn waits_for(line: &PromotionLine, stage: usize, now: u64, gate: Option<&String>) -> String {
    let Some(previous) = stage.checked_sub(1).and_then(|i| line.stages.get(i)) else {
        return "nothing".to_owned();
    };
    match (previous.run_id.as_ref(), previous.ended, previous.soak_until_ms) {
        (_, _, Some(until)) if until > now => {
            format!("{} soaks until {}", previous.secret, time(until))
        }
        (_, _, Some(_)) => match gate {
            Some(gate) => gate.clone(),
            None => format!("{} has soaked", previous.secret),
        },
        (Some(run), None, _) => format!("{} is rotating (run {run})", previous.secret),
        (Some(_), Some((_, phase)), None) => format!("{} ended {}", previous.secret, phase.name()),
        (None, _, _) => format!("{} has not started", previous.secret),
    }
}

/// When this node last sent a probe of each check.
type Probed = Arc<Mutex<HashMap<String, Instant>>>;

/// Runs the leader's promotion loop until `shutdown`.
pub async fn run(control: ControlPlane, shutdown: watch::Receiver<bool>) {
    let probed: Probed = Arc::default();
    super::while_leading(control, shutdown, TICK, "promotion", move |control| {
        let probed = probed.clone();
        async move {
            tick(&control).await?;
            probe_gates(&control, &probed).await
        }
    })
    .await;
}

/// Sends a probe of each gate a wave under way watches (the soaking stage's and the next
/// stage's), once per its `every`, to an agent of its segment connected here.
async fn probe_gates(control: &ControlPlane, probed: &Probed) -> Result<(), String> {
    let now = control.now_ms();
    let watched: Vec<(String, u64)> = control
        .read_local(|s| {
            let watched: std::collections::BTreeSet<&String> =
                s.promotions.values().flat_map(PromotionLine::watched_gates).collect();
            watched
                .into_iter()
                .map(|g| {
                    let at = s.gates.get(g).map_or(0, dsops_state::GateRecord::at_ms);
                    (g.clone(), at)
                })
                .collect()
        })
        .await;
    if watched.is_empty() {
        return Ok(());
    }
    let Some((_, loaded)) = start::applied_config(control).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let mut probed = probed.lock().expect("probed lock");
    for (name, recorded_at) in watched {
        let Some(check) = loaded.config.health.get(&name) else { continue };
        let every = Duration::from_secs(check.every.as_secs());
        if probed.get(&name).is_some_and(|at| at.elapsed() < every)
            || recorded_at + every.as_millis() as u64 > now
        {
            continue;
        }
        let mut probe = dsops_proto::wire::agent::HealthCheck {
            id: format!("hc-{name}-{now}"),
            check: name.clone(),
            kind: check.probe.kind().to_owned(),
            timeout_ms: (check.timeout.as_secs() * 1000).min(u64::from(u32::MAX)) as u32,
            ..Default::default()
        };
        match &check.probe {
            HealthProbe::Http { url, expect, body } => {
                probe.url = url.clone();
                probe.expect_status = u32::from(*expect);
                probe.body_contains = body.clone().unwrap_or_default();
            }
            HealthProbe::Sql { service, query, expect } => {
                probe.service = service.clone();
                probe.query = query.clone();
                probe.expect_value = expect.clone().unwrap_or_default();
            }
            HealthProbe::Script { service } => probe.service = service.clone(),
        }
        // Waits while no agent of the segment is connected here.
        if control.agents().send_health(&check.segment, probe).is_some() {
            probed.insert(name, Instant::now());
        }
    }
    Ok(())
}

/// Records an agent's signed probe result, with the check's rules from the configuration (the
/// state machine verifies the signature and the agent's segment).
pub async fn record_health(
    control: &ControlPlane,
    agent: &dsops_state::AgentRecord,
    result: &dsops_proto::wire::agent::HealthResult,
) {
    if result.body.len() > 2048 || result.signature.len() > 64 {
        tracing::warn!(agent_id = %agent.agent_id, "promotion: oversized health result ignored");
        return;
    }
    #[derive(serde::Deserialize)]
    struct Named {
        check: String,
    }
    let Ok(named) = serde_json::from_slice::<Named>(&result.body) else {
        tracing::warn!(agent_id = %agent.agent_id, "promotion: malformed health result ignored");
        return;
    };
    let Ok(Some((_, loaded))) = start::applied_config(control).await else { return };
    let Some(check) = loaded.config.health.get(&named.check) else {
        tracing::info!(check = %named.check, "promotion: a result for a check no longer configured");
        return;
    };
    let action = |a: GateAction| match a {
        GateAction::Halt => dsops_state::GateAction::Halt,
        GateAction::Wait => dsops_state::GateAction::Wait,
        GateAction::Continue => dsops_state::GateAction::Continue,
    };
    use sha2::Digest;
    let request_id =
        format!("health-{}", &dsops_proto::hex(&sha2::Sha256::digest(&result.body))[..40]);
    let command = dsops_state::Command::RecordHealth {
        agent_id: agent.agent_id.clone(),
        body_hex: dsops_proto::hex(&result.body),
        signature_hex: dsops_proto::hex(&result.signature),
        segment: check.segment.clone(),
        failures: check.failures,
        on_fail: action(check.on_fail),
        on_inconclusive: action(check.on_inconclusive),
    };
    let actor = format!("agent:{}", agent.agent_id);
    match control.write(&actor, &request_id, command).await {
        Ok(_) => {}
        Err(crate::control::WriteError::Rejected { message, .. }) => {
            tracing::info!(agent_id = %agent.agent_id, %message, "promotion: health result not recorded");
        }
        Err(error) => tracing::warn!(%error, "promotion: health result not committed"),
    }
}

/// A stage whose time has come.
struct Due {
    line: String,
    wave: u64,
    stage: usize,
    secret: String,
}

/// Starts each later stage whose previous stage has soaked, and a queued new wave.
pub(crate) async fn tick(control: &ControlPlane) -> Result<(), String> {
    let now = control.now_ms();
    let due: Vec<Due> = control
        .read_local(|s| {
            let mut due = Vec::new();
            if s.halt_all.is_some() {
                return due;
            }
            for (name, line) in s.promotions.iter().filter(|(_, l)| l.halted.is_none()) {
                if !line.active() {
                    if line.queued_at_ms.is_some()
                        && let Some(first) = line.stages.first()
                    {
                        due.push(Due {
                            line: name.clone(),
                            wave: line.wave + 1,
                            stage: 0,
                            secret: first.secret.clone(),
                        });
                    }
                    continue;
                }
                let Some(next) = line.stages.iter().position(|st| st.run_id.is_none()) else {
                    continue;
                };
                // Soaked, its gates pass, and no run of it is in flight outside the wave: asking
                // otherwise would only be refused (and a refused request is still a log entry).
                let busy = s
                    .secrets
                    .get(&line.stages[next].secret)
                    .is_some_and(|r| r.active_run.is_some());
                let ready = next > 0
                    && !busy
                    && line.stages[next - 1].soak_until_ms.is_some_and(|u| u <= now)
                    && dsops_state::gates_block(s, line, next).is_none();
                if ready {
                    due.push(Due {
                        line: name.clone(),
                        wave: line.wave,
                        stage: next,
                        secret: line.stages[next].secret.clone(),
                    });
                }
            }
            due
        })
        .await;
    if due.is_empty() {
        return Ok(());
    }
    let Some((version, loaded)) =
        start::applied_config(control).await.map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let actor = format!("node-{} promotion", control.node_id());
    for d in due {
        let Some((env, key)) = d.secret.split_once('/') else { continue };
        let item = match spec::find(&loaded, env, key) {
            Ok(item) => item,
            Err(error) => {
                tracing::warn!(line = %d.line, secret = %d.secret, %error, "promotion: the stage is no longer configured");
                continue;
            }
        };
        // A new id per try: a refused request is remembered by its id, and a stage refused once
        // (its window closed meanwhile) must be asked again. Two leaders cannot both start it:
        // the state machine starts a stage of a wave once.
        let id = run_id(&format!("wave-{}-{}-{}-{now}", d.line, d.wave, d.stage), env, key);
        let start = Start {
            force: false,
            dry_run: false,
            single: false,
            restore_previous: false,
            reason: format!("promotion: wave {} of line {}", d.wave, d.line),
            local: false,
            break_glass: false,
            wave: true,
        };
        let started =
            start::start_runs(control, &actor, &loaded, version, vec![(item, id)], &start)
                .await
                .map_err(|e| e.to_string())?;
        for row in started.runs.iter().filter(|r| !r.detail.is_empty() && r.run_id.is_empty()) {
            // Outside its windows, awaiting approval, refused: it is looked at again next tick.
            tracing::debug!(line = %d.line, secret = %d.secret, why = %row.detail, "promotion: the stage waits");
        }
    }
    Ok(())
}

/// `dsops promotion status`: each line of the configuration with its wave, stage by stage.
pub(crate) async fn status(
    control: &ControlPlane,
    env: &str,
    key: &str,
) -> Result<wire::PromotionStatusResponse, start::RotationError> {
    let (_, loaded) = start::current_config(control).await?;
    let lines = loaded.config.promotion_lines();
    let now = dsops_proto::now_ms();
    let (states, halted_all, secrets, gate_waits) = control
        .read_local(|s| {
            let gate_waits: HashMap<String, String> = s
                .promotions
                .iter()
                .filter_map(|(name, line)| {
                    let next = line.stages.iter().position(|st| st.run_id.is_none())?;
                    Some((name.clone(), dsops_state::gates_block(s, line, next)?))
                })
                .collect();
            let secrets: std::collections::HashMap<String, Option<String>> = lines
                .iter()
                .flat_map(|l| l.stages.iter())
                .map(|st| {
                    let id = secret_id(&st.env, &st.key);
                    let active = s.secrets.get(&id).and_then(|r| r.active_run.clone());
                    (id, active)
                })
                .collect();
            (s.promotions.clone(), s.halt_all.clone(), secrets, gate_waits)
        })
        .await;
    let mut out = Vec::new();
    for line in lines {
        if !key.is_empty() && line.name != key && !line.stages.iter().any(|s| s.key == key) {
            continue;
        }
        if !env.is_empty() && !line.stages.iter().any(|s| s.env == env) {
            continue;
        }
        let state = states.get(&line.name).cloned().unwrap_or_default();
        let mut stages = Vec::new();
        for (i, configured) in line.stages.iter().enumerate() {
            let id = secret_id(&configured.env, &configured.key);
            let wave_stage = state.stages.get(i).filter(|s| s.secret == id);
            let (name, detail, until) =
                stage_state(&state, wave_stage, i, now, gate_waits.get(&line.name));
            let (name, detail) = match secrets.get(&id).cloned().flatten() {
                Some(run) if name == "pending" => {
                    ("rotating", format!("run {run} (outside the wave)"))
                }
                _ => (name, detail),
            };
            stages.push(wire::PromotionStageStatus {
                env: configured.env.clone(),
                key: configured.key.clone(),
                state: name.to_owned(),
                detail,
                run_id: wave_stage.and_then(|s| s.run_id.clone()).unwrap_or_default(),
                until: until.map(dsops_proto::domain::timestamp_ms),
            });
        }
        out.push(wire::PromotionLineStatus {
            line: line.name.clone(),
            wave: state.wave,
            halted: state
                .halted
                .as_ref()
                .map(|h| format!("{} (by {})", h.reason, h.by))
                .unwrap_or_default(),
            queued: state.queued_at_ms.is_some(),
            stages,
        });
    }
    Ok(wire::PromotionStatusResponse {
        lines: out,
        halted_all: halted_all.map(|h| format!("{} (by {})", h.reason, h.by)).unwrap_or_default(),
    })
}

/// A stage's state, what it waits for, and until when.
fn stage_state(
    line: &PromotionLine,
    stage: Option<&dsops_state::WaveStage>,
    index: usize,
    now: u64,
    gate: Option<&String>,
) -> (&'static str, String, Option<u64>) {
    let Some(stage) = stage else { return ("pending", String::new(), None) };
    match (stage.run_id.as_ref(), stage.ended, stage.soak_until_ms) {
        (Some(_), Some((_, dsops_state::RunPhase::Completed)), Some(until))
            if until > now && index + 1 < line.stages.len() =>
        {
            ("soaking", format!("until {}", time(until)), Some(until))
        }
        (Some(_), Some((at, dsops_state::RunPhase::Completed)), _) => {
            ("done", format!("completed {}", time(at)), Some(at))
        }
        (Some(_), Some((at, phase)), _) => {
            ("failed", format!("ended {} {}", phase.name(), time(at)), Some(at))
        }
        (Some(run), None, _) => ("rotating", format!("run {run}"), None),
        // The next stage shows the halt; the ones after it wait for that stage.
        (None, _, _)
            if line.halted.is_some()
                && line.stages.iter().position(|s| s.run_id.is_none()) == Some(index) =>
        {
            ("halted", line.halted.as_ref().map(|h| h.reason.clone()).unwrap_or_default(), None)
        }
        (None, _, _) if line.active() => {
            let next = line.stages.iter().position(|s| s.run_id.is_none()) == Some(index);
            ("waiting", waits_for(line, index, now, gate.filter(|_| next)), None)
        }
        (None, _, _) => ("pending", String::new(), None),
    }
}
