//! A test bed for the state machine: a state with one registered agent, a clock, and helpers
//! that request runs, dispatch their steps and answer them with signed receipts.

use std::time::{Duration, UNIX_EPOCH};

use dsops_proto::domain::{AgentId, Fingerprint, Generation, ReceiptBody, RunId, SignedReceipt};
use ed25519_dalek::SigningKey;

use crate::{
    ApplyContext, Command, Outcome, Request, Run, RunPhase, RunSpec, State, StepKind, apply,
};

/// A state with agent `agent-1` registered, a clock, and helpers to drive runs.
pub(crate) struct World {
    pub state: State,
    pub index: u64,
    pub now: u64,
    pub key: SigningKey,
}

/// A run of `strategy` on `svc://pg` (no target for `random`).
pub(crate) fn spec(strategy: &str) -> RunSpec {
    RunSpec {
        strategy: strategy.to_owned(),
        store_ref: "store://local/app/db#password".to_owned(),
        service_ref: (strategy != "random").then(|| "svc://pg?kind=db_password".to_owned()),
        config_json: "{}".to_owned(),
        segment: "default".to_owned(),
        grace_ms: 1_000,
        max_attempts: 3,
        step_timeout_ms: 5_000,
        config_version: 1,
        value_format: None,
        approval: None,
        promotion: None,
        rate_limit: None,
    }
}

impl World {
    pub(crate) fn new() -> World {
        let mut world = World {
            state: State::default(),
            index: 0,
            now: 1_000_000,
            key: SigningKey::from_bytes(&[9; 32]),
        };
        let public_key = dsops_proto::hex(&world.key.verifying_key().to_bytes());
        let outcome = world.apply(Command::RegisterAgent {
            agent_id: "agent-1".into(),
            segment: "default".into(),
            public_key,
        });
        assert!(matches!(outcome, Outcome::AgentRegistered { .. }), "{outcome:?}");
        world
    }

    pub(crate) fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let request = Request {
            request_id: format!("r{}", self.index),
            actor: "test".into(),
            proposed_at_ms: self.now,
            command,
        };
        apply(&mut self.state, &request, ApplyContext { index: self.index }).outcome
    }

    pub(crate) fn request(&mut self, strategy: &str) -> Outcome {
        self.request_with(spec(strategy))
    }

    pub(crate) fn request_with(&mut self, spec: RunSpec) -> Outcome {
        self.request_for("dev", "DB_PASSWORD", spec, false)
    }

    /// Requests a run of `env`/`key`.
    pub(crate) fn request_for(
        &mut self,
        env: &str,
        key: &str,
        spec: RunSpec,
        break_glass: bool,
    ) -> Outcome {
        let run_id = format!("run-{}", self.index + 1);
        self.apply(Command::RequestRun {
            run_id,
            env: env.into(),
            key: key.into(),
            spec,
            restore_previous: false,
            reason: "test".into(),
            break_glass,
            trace_parent: None,
        })
    }

    pub(crate) fn run(&self, id: &str) -> &Run {
        &self.state.runs[id]
    }

    /// Dispatches the run's current step to agent-1 (waiting out any backoff first).
    pub(crate) fn dispatch(&mut self, id: &str) -> Outcome {
        let run = self.run(id).clone();
        self.now = self.now.max(run.not_before_ms);
        self.apply(Command::DispatchStep {
            run_id: id.into(),
            generation: run.generation,
            step: run.step.expect("not terminal"),
            checked_step: run.checked_step,
            attempt: run.attempt,
            agent_id: "agent-1".into(),
            deadline_ms: self.now + 5_000,
        })
    }

    pub(crate) fn body(&self, id: &str, outcome: dsops_proto::domain::StepOutcome) -> ReceiptBody {
        let run = self.run(id);
        let dispatch = run.dispatched.clone().expect("dispatched");
        ReceiptBody {
            run_id: RunId::parse(id, "run_id").unwrap(),
            generation: Generation::parse(run.generation, "g").unwrap(),
            step: dispatch.step,
            target: "svc://pg?kind=db_password".into(),
            // As the agent does: a rollback that restored the earlier value names no value.
            value_fingerprint: (dispatch.step != StepKind::Rollback)
                .then_some(Fingerprint([7; 32])),
            performed_at: UNIX_EPOCH + Duration::from_millis(self.now),
            outcome,
            detail: String::new(),
            agent_id: AgentId::parse("agent-1", "agent_id").unwrap(),
            attempt: dispatch.attempt,
            retry_after: None,
            renew_at: None,
        }
    }

    pub(crate) fn submit(&mut self, body: ReceiptBody, key: &SigningKey) -> Outcome {
        self.submit_with(body, key, None, None)
    }

    pub(crate) fn submit_with(
        &mut self,
        body: ReceiptBody,
        key: &SigningKey,
        verified_with: Option<String>,
        next_agent: Option<&str>,
    ) -> Outcome {
        let signed = SignedReceipt::sign(body, key);
        self.apply(Command::RecordReceipt {
            body_hex: dsops_proto::hex(&signed.body_bytes),
            signature_hex: dsops_proto::hex(&signed.signature),
            jitter_permille: 500,
            verified_with,
            next_agent: next_agent.map(str::to_owned),
        })
    }

    /// Dispatches the current step and answers it with `outcome`.
    pub(crate) fn step(&mut self, id: &str, outcome: dsops_proto::domain::StepOutcome) -> Outcome {
        let dispatched = self.dispatch(id);
        assert!(matches!(dispatched, Outcome::RunUpdated { .. }), "{dispatched:?}");
        let key = self.key.clone();
        let body = self.body(id, outcome);
        self.submit(body, &key)
    }

    pub(crate) fn phases(&self, id: &str) -> Vec<RunPhase> {
        self.run(id).transitions.iter().map(|t| t.phase).collect()
    }
}

/// The id of a started run.
pub(crate) fn started(outcome: Outcome) -> String {
    match outcome {
        Outcome::RunStarted { run_id, .. } => run_id,
        other => panic!("not started: {other:?}"),
    }
}
