//! The leader's dispatcher: sends each run's next step to an agent of its segment when it is
//! due and turns missed deadlines into checks (receipts are committed in `receipts`).
//!
//! It runs on every node and acts only while the node leads, from the replicated state alone,
//! so a new leader picks up where the old one stopped. Each action is a raft write first (the
//! dispatch is recorded, then the job is sent), and the state machine refuses anything stale,
//! so two leaders overlapping for a moment cannot run a step twice under one attempt.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use dsops_proto::domain::{Generation, Job, RunId, ServiceRef, StoreRef};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::control::AgentRegistry;
use crate::control::ControlPlane;
use dsops_state::{Command, Run, RunSpec, State, StepKind};

/// How often the dispatcher looks even when nothing woke it (backoffs and deadlines expire
/// without an event).
const TICK: Duration = Duration::from_millis(100);
/// Runs in progress at once per target (service, or store for application secrets).
pub const MAX_RUNS_PER_TARGET: u32 = 16;
/// Runs in progress at once per segment (what its agents and links carry), over all targets.
pub const MAX_RUNS_PER_SEGMENT: u32 = 64;
/// How often dispatched runs are checked for a resend even without a new agent session.
const RESEND_SCAN: Duration = Duration::from_secs(1);
/// How long the agent a step was sent to may be without a session before another agent of the
/// segment takes the step over (as a check of what the first may have done). Longer than a
/// reconnect after a leader change (about 2 s), so a healthy agent keeps its steps.
pub const AGENT_LOST: Duration = Duration::from_secs(10);

/// One step of one run, as the state holds it.
#[derive(Debug, Clone)]
pub(super) struct StepOrder {
    run_id: String,
    env: String,
    key: String,
    generation: u64,
    step: StepKind,
    checked_step: Option<StepKind>,
    attempt: u32,
    spec: RunSpec,
    restore_previous: bool,
    trace_parent: Option<String>,
}

impl StepOrder {
    pub(super) fn of(
        run: &Run,
        step: StepKind,
        checked_step: Option<StepKind>,
        attempt: u32,
    ) -> StepOrder {
        StepOrder {
            run_id: run.id.clone(),
            env: run.env.clone(),
            key: run.key.clone(),
            generation: run.generation,
            step,
            checked_step,
            attempt,
            spec: run.spec.clone(),
            restore_previous: run.restore_previous,
            trace_parent: run.trace_parent.clone(),
        }
    }

    /// The job for an agent, due back by `deadline_ms`.
    fn job(&self, deadline_ms: u64) -> Option<Job> {
        let spec = &self.spec;
        Some(Job {
            run_id: RunId::parse(&self.run_id, "run_id").ok()?,
            generation: Generation::parse(self.generation, "generation").ok()?,
            step: self.step,
            attempt: self.attempt,
            env: self.env.clone(),
            key: self.key.clone(),
            store_ref: StoreRef::parse(&spec.store_ref).ok()?,
            service_ref: match &spec.service_ref {
                Some(text) => Some(ServiceRef::parse(text).ok()?),
                None => None,
            },
            strategy: spec.strategy.clone(),
            config_json: spec.config_json.clone(),
            deadline: UNIX_EPOCH + Duration::from_millis(deadline_ms),
            time_left: None,
            checked_step: self.checked_step,
            restore_previous: self.restore_previous,
            value_format: spec.value_format.clone(),
            trace_parent: self.trace_parent.clone(),
        })
    }
}

/// What the dispatcher will do for one run.
#[derive(Debug, Clone)]
enum Action {
    Dispatch(Box<StepOrder>),
    Resend {
        order: Box<StepOrder>,
        agent_id: String,
        deadline_ms: u64,
    },
    TimeOut {
        run_id: String,
        generation: u64,
        step: StepKind,
        attempt: u32,
        /// Given up early: this agent lost its session and another one can take over.
        lost_agent: Option<String>,
    },
}

impl Action {
    fn run_id(&self) -> &str {
        match self {
            Action::Dispatch(order) | Action::Resend { order, .. } => &order.run_id,
            Action::TimeOut { run_id, .. } => run_id,
        }
    }
}

/// The actions due now, from the state's indexes: O(due), never a scan of every run. With
/// `resend_scan`, also every dispatched run whose agent has a new session here (after an agent
/// reconnected or this node became leader).
fn due(
    state: &State,
    now: u64,
    agents: &AgentRegistry,
    resend_scan: bool,
    lost: &HashSet<String>,
    absent: &mut HashSet<String>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (_, run_id) in state.deadlines.range(..(now.saturating_add(1), String::new())) {
        let Some(run) = state.runs.get(run_id) else { continue };
        if let Some(d) = &run.dispatched {
            actions.push(Action::TimeOut {
                run_id: run_id.clone(),
                generation: run.generation,
                step: d.step,
                attempt: d.attempt,
                lost_agent: None,
            });
        }
    }
    let due_now = ..(now.saturating_add(1), String::new());
    // Started runs whose next step is due, then runs not started yet while their target has
    // room: a bulk rotation flows through the target at a steady rate instead of staging
    // everything first.
    // A segment's room is shared by its targets: count what this pass starts.
    let mut segment_room: HashMap<&str, u32> = HashMap::new();
    // And a target's rate limit: at most so many starts in its window.
    let mut rate_room: HashMap<String, u32> = HashMap::new();
    let started = state.ready.range(due_now.clone());
    let starting = state.queued.iter().flat_map(|(target, queue)| {
        let load = state.target_load.get(target).copied().unwrap_or(0);
        let room = MAX_RUNS_PER_TARGET.saturating_sub(load) as usize;
        queue.range(due_now.clone()).take(room)
    });
    let starting = starting.filter(|(_, run_id)| {
        let Some(run) = state.runs.get(run_id) else { return false };
        let segment = run.spec.segment.as_str();
        let room = segment_room.entry(segment).or_insert_with(|| {
            let load = state.segment_load.get(segment).copied().unwrap_or(0);
            MAX_RUNS_PER_SEGMENT.saturating_sub(load)
        });
        if *room == 0 {
            return false;
        }
        if run.spec.rate_limit.is_some() {
            let rate = rate_room
                .entry(run.spec.target_key())
                .or_insert_with(|| state.rate_room(&run.spec, now));
            if *rate == 0 {
                return false;
            }
            *rate -= 1;
        }
        *room -= 1;
        true
    });
    for (_, run_id) in started.chain(starting) {
        if let Some(run) = state.runs.get(run_id)
            && let Some(step) = run.step
            // Halted (`dsops promotion halt`): no new step starts.
            && state.step_held(run).is_none()
        {
            let order = StepOrder::of(run, step, run.checked_step, run.attempt);
            actions.push(Action::Dispatch(Box::new(order)));
        }
    }
    if resend_scan {
        // Dispatched before this process restarted, by an earlier leader, or on an earlier
        // session of an agent that has reconnected since: send the same job again. Steps are
        // idempotent for the same run, generation and attempt, and only one receipt for it is
        // accepted.
        for (deadline, run_id) in state.deadlines.range((now.saturating_add(1), String::new())..) {
            let Some(run) = state.runs.get(run_id) else { continue };
            let Some(d) = &run.dispatched else { continue };
            let session = agents.session_of(&d.agent_id);
            if session.is_none() {
                absent.insert(d.agent_id.clone());
                // Its agent has been gone a while and another one of the segment can do it:
                // give the step up now (it becomes a check, sent to whoever is connected);
                // the first agent's late receipt is refused as a stale attempt.
                if lost.contains(&d.agent_id) && agents.has_agent(&run.spec) {
                    actions.push(Action::TimeOut {
                        run_id: run_id.clone(),
                        generation: run.generation,
                        step: d.step,
                        attempt: d.attempt,
                        lost_agent: Some(d.agent_id.clone()),
                    });
                }
                continue;
            }
            if agents.sent_on(&(run_id.clone(), d.attempt, d.step)) != session {
                actions.push(Action::Resend {
                    order: Box::new(StepOrder::of(run, d.step, d.checked_step, d.attempt)),
                    agent_id: d.agent_id.clone(),
                    deadline_ms: *deadline,
                });
            }
        }
    }
    actions
}

pub(super) fn jitter() -> u16 {
    rand::random_range(0..=1000)
}

/// Runs the dispatcher until `shutdown`.
pub async fn run(control: ControlPlane, mut shutdown: watch::Receiver<bool>) {
    let wake = control.agents().waker();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut last_epoch: Option<u64> = None;
    let mut last_scan = std::time::Instant::now();
    // Agents that dispatched steps wait on and that have no session here, since when.
    let mut missing: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let metrics = control.metrics();
        if metrics.current_leader != Some(control.node_id()) {
            control.agents().forget_sent();
            missing.clear();
            last_epoch = None;
            continue;
        }
        let now = control.now_ms();
        // Look for steps to resend when agents (re)connected, on becoming leader, and now and
        // then (a send that failed while an agent was away).
        let epoch = control.agents().epoch();
        let resend_scan = last_epoch != Some(epoch) || last_scan.elapsed() > RESEND_SCAN;
        if resend_scan {
            last_epoch = Some(epoch);
            last_scan = std::time::Instant::now();
        }
        let lost: HashSet<String> = missing
            .iter()
            .filter(|(_, since)| since.elapsed() >= AGENT_LOST)
            .map(|(agent, _)| agent.clone())
            .collect();
        let mut absent = HashSet::new();
        let actions = control
            .read_local(|state| {
                let actions = due(state, now, control.agents(), resend_scan, &lost, &mut absent);
                if resend_scan {
                    // What was sent for runs that have ended is of no further use.
                    control.agents().retain_sent(|run_id| {
                        state.runs.get(run_id).is_some_and(|run| !run.phase.is_terminal())
                    });
                }
                actions
            })
            .await;
        if resend_scan {
            missing.retain(|agent, _| absent.contains(agent));
            for agent in absent {
                missing.entry(agent).or_insert_with(std::time::Instant::now);
            }
        }
        for action in actions {
            let run_id = action.run_id().to_owned();
            if !busy.lock().expect("busy lock").insert(run_id.clone()) {
                continue;
            }
            let (control, busy) = (control.clone(), busy.clone());
            tokio::spawn(async move {
                perform(&control, action).await;
                busy.lock().expect("busy lock").remove(&run_id);
            });
        }
    }
}

async fn perform(control: &ControlPlane, action: Action) {
    let actor = format!("node-{}", control.node_id());
    match action {
        Action::Dispatch(order) => {
            // A span under the run's trace (the request that started it); the job carries it
            // on to the agent.
            let span = step_span(&order, false);
            dispatch(control, &actor, order).instrument(span).await;
        }
        Action::Resend { order, agent_id, deadline_ms } => {
            // Decided from the state as it was: the first send may have completed since, which
            // `send_step` checks against the agent's current session.
            send(control, &agent_id, &order, deadline_ms, true);
        }
        Action::TimeOut { run_id, generation, step, attempt, lost_agent } => {
            let request_id = format!("timeout-{run_id}-{generation}-{step}-{attempt}");
            let command = Command::StepTimedOut {
                run_id: run_id.clone(),
                generation,
                step,
                attempt,
                jitter_permille: jitter(),
                lost_agent: lost_agent.clone(),
            };
            if let Err(error) = control.write(&actor, &request_id, command).await {
                tracing::debug!(%run_id, %error, "time-out not recorded");
            }
        }
    }
    control.agents().wake();
}

/// The span of sending `order`'s step (again, for `resend`), under the run's trace.
fn step_span(order: &StepOrder, resend: bool) -> tracing::Span {
    let span = dsops_telemetry::span(|| {
        tracing::info_span!(
            "dispatch",
            run_id = %order.run_id,
            step = %order.step,
            attempt = order.attempt,
            resend
        )
    });
    dsops_telemetry::set_parent(&span, order.trace_parent.as_deref());
    span
}

/// What is left of a step's time as its job goes out, on this node's clock: the one that
/// decides when the step has timed out. The agent measures it from the job's arrival
/// ([`Job::arrived`]), so the two hosts' clocks need not agree.
fn time_left(control: &ControlPlane, deadline_ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(deadline_ms.saturating_sub(control.now_ms())))
}

/// Sends `order`'s step to an agent of its segment, once the log records the dispatch.
async fn dispatch(control: &ControlPlane, actor: &str, order: Box<StepOrder>) {
    let Some(agent_id) = control.agents().pick(&order.spec) else {
        // No agent of the segment is connected: the run waits (status shows it).
        return;
    };
    let deadline_ms = control.now_ms() + order.spec.step_timeout_ms;
    let Some(mut job) = order.job(deadline_ms) else {
        tracing::error!(run_id = %order.run_id, "run has references that do not parse; it will time out");
        return;
    };
    job.trace_parent = dsops_telemetry::traceparent().or(job.trace_parent);
    let StepOrder { run_id, generation, step, checked_step, attempt, .. } = *order;
    let request_id = format!("dispatch-{run_id}-{generation}-{step}-{attempt}");
    let command = Command::DispatchStep {
        run_id: run_id.clone(),
        generation,
        step,
        checked_step,
        attempt,
        agent_id: agent_id.clone(),
        deadline_ms,
    };
    match control.write(actor, &request_id, command).await {
        Ok(response) if !response.duplicate => {
            let key = (run_id.clone(), attempt, step);
            if control.agents().session_of(&agent_id).is_none() {
                tracing::warn!(
                    %run_id,
                    %agent_id,
                    "agent went away after dispatch; the step is resent when it reconnects, or checked at its deadline"
                );
            } else {
                // A resend decided meanwhile may have sent it already.
                job.time_left = time_left(control, deadline_ms);
                control.agents().send_step(&agent_id, key, job);
            }
        }
        Ok(_) => {}
        Err(error) => tracing::debug!(%run_id, %error, "dispatch not recorded"),
    }
}

/// Sends `order`'s step (recorded as dispatched) to `agent_id`, the job under a span of the run's
/// trace.
pub(super) fn send(
    control: &ControlPlane,
    agent_id: &str,
    order: &StepOrder,
    deadline_ms: u64,
    resend: bool,
) {
    let Some(mut job) = order.job(deadline_ms) else { return };
    job.time_left = time_left(control, deadline_ms);
    let span = step_span(order, resend);
    let _inside = span.enter();
    job.trace_parent = dsops_telemetry::traceparent().or(job.trace_parent);
    control.agents().send_step(agent_id, (order.run_id.clone(), order.attempt, order.step), job);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use dsops_state::{ApplyContext, Outcome, Request, apply};

    fn request(state: &mut State, n: usize, segment: &str, target: &str) {
        let spec = RunSpec {
            strategy: "random".into(),
            store_ref: format!("store://{target}/app/k{n}#v"),
            service_ref: None,
            config_json: "{}".into(),
            segment: segment.into(),
            grace_ms: 0,
            max_attempts: 3,
            step_timeout_ms: 60_000,
            config_version: 1,
            value_format: None,
            approval: None,
            promotion: None,
            rate_limit: None,
        };
        let command = Command::RequestRun {
            run_id: format!("run-{segment}-{target}-{n}"),
            env: "prod".into(),
            key: format!("K_{segment}_{target}_{n}"),
            spec,
            restore_previous: false,
            reason: "test".into(),
            break_glass: false,
            trace_parent: None,
        };
        let request = Request {
            request_id: format!("r-{segment}-{target}-{n}"),
            actor: "test".into(),
            proposed_at_ms: 1_000,
            command,
        };
        let outcome = apply(state, &request, ApplyContext { index: 1 }).outcome;
        assert!(matches!(outcome, Outcome::RunStarted { .. }), "{outcome:?}");
    }

    fn starts(state: &State) -> BTreeMap<String, usize> {
        let mut per_segment = BTreeMap::new();
        let actions = due(
            state,
            2_000,
            &AgentRegistry::default(),
            false,
            &HashSet::new(),
            &mut HashSet::new(),
        );
        for action in actions {
            if let Action::Dispatch(order) = action {
                *per_segment.entry(order.spec.segment.clone()).or_default() += 1;
            }
        }
        per_segment
    }

    #[test]
    fn starting_runs_respects_target_and_segment_limits() {
        let mut state = State::default();
        // Six stores of 20 runs each in one segment, and one store of 20 in another.
        for target in 0..6 {
            for n in 0..20 {
                request(&mut state, n, "busy", &format!("t{target}"));
            }
        }
        for n in 0..20 {
            request(&mut state, n, "quiet", "q");
        }
        let started = starts(&state);
        // 16 per target would be 96 for the busy segment: its own limit holds it at 64.
        assert_eq!(started["busy"], MAX_RUNS_PER_SEGMENT as usize);
        assert_eq!(started["quiet"], MAX_RUNS_PER_TARGET as usize);
    }
}
