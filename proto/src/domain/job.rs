use std::time::{Duration, SystemTime};

use super::{
    Generation, ProtocolError, RunId, ServiceRef, Step, StoreRef, required_time, wire_time,
};
use crate::wire::agent as wire;

/// One step of a run for an agent to perform. It names where things are, never their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The run.
    pub run_id: RunId,
    /// The generation fencing the run.
    pub generation: Generation,
    /// The step.
    pub step: Step,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The environment, e.g. `prod`.
    pub env: String,
    /// The variable within the environment.
    pub key: String,
    /// Where the value lives; without a field, the whole value ([`StoreRef::value_field`]).
    pub store_ref: StoreRef,
    /// The target; `None` for the `random` strategy.
    pub service_ref: Option<ServiceRef>,
    /// The strategy name.
    pub strategy: String,
    /// Strategy configuration (JSON text, validated by the control plane before dispatch).
    pub config_json: String,
    /// When the control plane stops waiting for the receipt: on the sender's clock as sent, on
    /// the agent's once [`Job::arrived`] has measured [`Job::time_left`] from the job's arrival.
    pub deadline: SystemTime,
    /// How long the control plane will still wait for the receipt, as it sent the job (its
    /// deadline less its own clock). Hosts' clocks disagree, and a control plane's clock can be
    /// stepped; a length of time does not depend on either. `None` from a control plane that
    /// predates it: the agent goes by [`Job::deadline`].
    pub time_left: Option<Duration>,
    /// For [`Step::Check`]: the step being checked (never `Check` itself).
    pub checked_step: Option<Step>,
    /// Stage the store's previous version instead of a new value (a rollback run).
    pub restore_previous: bool,
    /// The catalog's format constraint for new values; `None` for none.
    pub value_format: Option<String>,
    /// The dispatch's trace context (see [`crate::trace`]); `None` when not traced or malformed.
    pub trace_parent: Option<String>,
}

/// The longest a control plane may say a step has left: far beyond any step timeout, short
/// enough that adding it to a clock cannot overflow.
const MAX_TIME_LEFT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Job {
    /// The job as it arrived at `now` on this host's clock: its deadline is `now` plus the time
    /// the control plane said was left, so that it does not depend on the two clocks agreeing
    /// (a control plane whose clock is behind the agent's would otherwise send deadlines that
    /// look already passed, and one ahead would give the agent time the control plane does not
    /// wait for). A job without [`Job::time_left`] keeps its deadline.
    pub fn arrived(mut self, now: SystemTime) -> Job {
        if let Some(deadline) = self.time_left.and_then(|left| now.checked_add(left)) {
            self.deadline = deadline;
        }
        self
    }
}

impl TryFrom<wire::Job> for Job {
    type Error = ProtocolError;

    fn try_from(job: wire::Job) -> Result<Job, ProtocolError> {
        let wire::Job {
            run_id,
            generation,
            step,
            attempt,
            env,
            key,
            store_ref,
            service_ref,
            strategy,
            config_json,
            deadline,
            checked_step,
            restore_previous,
            value_format,
            traceparent,
            time_left_ms,
        } = job;
        if attempt == 0 {
            return Err(ProtocolError::missing("attempt"));
        }
        if strategy.is_empty() {
            return Err(ProtocolError::missing("strategy"));
        }
        super::SecretKey::parse(&env, &key)?;
        let store_ref = StoreRef::parse(&store_ref)
            .map_err(|error| ProtocolError::invalid("store_ref", error.to_string()))?;
        let service_ref = if service_ref.is_empty() {
            None
        } else {
            Some(
                ServiceRef::parse(&service_ref)
                    .map_err(|error| ProtocolError::invalid("service_ref", error.to_string()))?,
            )
        };
        let step = Step::from_wire(step, "step")?;
        let time_left = match time_left_ms {
            Some(ms) if ms > MAX_TIME_LEFT.as_millis() as u64 => {
                return Err(ProtocolError::invalid(
                    "time_left_ms",
                    format!("{ms} ms is more than a step may take ({MAX_TIME_LEFT:?})"),
                ));
            }
            ms => ms.map(Duration::from_millis),
        };
        let checked_step = match (step, checked_step) {
            (Step::Check, value) => match Step::from_wire(value, "checked_step")? {
                Step::Check => {
                    return Err(ProtocolError::invalid("checked_step", "cannot check a check"));
                }
                checked => Some(checked),
            },
            (_, 0) => None,
            (_, _) => {
                return Err(ProtocolError::invalid("checked_step", "only a check step names one"));
            }
        };
        Ok(Job {
            run_id: RunId::parse(&run_id, "run_id")?,
            generation: Generation::parse(generation, "generation")?,
            step,
            attempt,
            env,
            key,
            store_ref,
            service_ref,
            strategy,
            config_json,
            deadline: required_time(deadline, "deadline")?,
            time_left,
            checked_step,
            restore_previous,
            value_format: (!value_format.is_empty()).then_some(value_format),
            // Tracing never refuses a job: a malformed context is dropped.
            trace_parent: crate::trace::is_traceparent(&traceparent).then_some(traceparent),
        })
    }
}

impl From<&Job> for wire::Job {
    fn from(job: &Job) -> wire::Job {
        wire::Job {
            run_id: job.run_id.to_string(),
            generation: job.generation.get(),
            step: job.step.to_wire(),
            attempt: job.attempt,
            env: job.env.clone(),
            key: job.key.clone(),
            store_ref: job.store_ref.to_string(),
            service_ref: job.service_ref.as_ref().map(ToString::to_string).unwrap_or_default(),
            strategy: job.strategy.clone(),
            config_json: job.config_json.clone(),
            deadline: Some(wire_time(job.deadline)),
            checked_step: job.checked_step.map_or(0, Step::to_wire),
            restore_previous: job.restore_previous,
            value_format: job.value_format.clone().unwrap_or_default(),
            traceparent: job.trace_parent.clone().unwrap_or_default(),
            time_left_ms: job
                .time_left
                .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn wire_job() -> wire::Job {
        wire::Job {
            run_id: "run-9".into(),
            generation: 2,
            step: Step::Stage.to_wire(),
            attempt: 1,
            env: "dev".into(),
            key: "DB_PASSWORD".into(),
            store_ref: "store://local/app/db#password".into(),
            service_ref: "svc://pg-dev?kind=db_password".into(),
            strategy: "immediate".into(),
            config_json: "{\"username\":\"app\"}".into(),
            deadline: Some(wire_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000))),
            checked_step: 0,
            restore_previous: false,
            value_format: "^[A-Za-z0-9_-]{32,64}$".into(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            time_left_ms: Some(45_000),
        }
    }

    #[test]
    fn the_deadline_is_measured_from_arrival_on_the_agents_clock() {
        // The control plane's clock is far behind: its absolute deadline has long passed here.
        let mut wire = wire_job();
        wire.deadline = Some(wire_time(UNIX_EPOCH + Duration::from_secs(1_000)));
        let arrival = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let job = Job::try_from(wire.clone()).unwrap().arrived(arrival);
        assert_eq!(job.deadline, arrival + Duration::from_secs(45));
        assert_eq!(job.time_left, Some(Duration::from_secs(45)));

        // A control plane that predates the field: its deadline stands.
        wire.time_left_ms = None;
        let job = Job::try_from(wire).unwrap().arrived(arrival);
        assert_eq!(job.deadline, UNIX_EPOCH + Duration::from_secs(1_000));
    }

    #[test]
    fn job_round_trips() {
        let job = Job::try_from(wire_job()).unwrap();
        assert_eq!(job.service_ref.as_ref().unwrap().kind.as_deref(), Some("db_password"));
        assert_eq!(wire::Job::from(&job), wire_job());
    }

    #[test]
    fn a_malformed_trace_context_is_dropped_not_refused() {
        let mut wire = wire_job();
        wire.traceparent = "not a trace".repeat(100);
        let job = Job::try_from(wire).unwrap();
        assert_eq!(job.trace_parent, None);
    }

    #[test]
    fn job_rejects_missing_and_malformed_fields() {
        type Mutation = fn(&mut wire::Job);
        let cases: Vec<(Mutation, &str)> = vec![
            (|j| j.run_id.clear(), "run_id"),
            (|j| j.generation = 0, "generation"),
            (|j| j.step = 0, "step"),
            (|j| j.attempt = 0, "attempt"),
            (|j| j.env.clear(), "env"),
            (|j| j.store_ref = "vault://x".into(), "store_ref"),
            (|j| j.service_ref = "svc://pg/x/y".into(), "service_ref"),
            (|j| j.deadline = None, "deadline"),
            (|j| j.time_left_ms = Some(u64::MAX), "time_left_ms"),
            (|j| j.time_left_ms = Some(MAX_TIME_LEFT.as_millis() as u64 + 1), "time_left_ms"),
            (|j| j.checked_step = Step::Apply.to_wire(), "checked_step"),
            (
                |j| {
                    j.step = Step::Check.to_wire();
                    j.checked_step = 0;
                },
                "checked_step",
            ),
            (
                |j| {
                    j.step = Step::Check.to_wire();
                    j.checked_step = Step::Check.to_wire();
                },
                "checked_step",
            ),
        ];
        for (mutate, field) in cases {
            let mut job = wire_job();
            mutate(&mut job);
            let error = Job::try_from(job).unwrap_err();
            assert_eq!(error.field, field, "{error}");
            #[cfg(feature = "grpc")]
            assert_eq!(tonic::Status::from(error).code(), tonic::Code::InvalidArgument);
        }
    }
}
