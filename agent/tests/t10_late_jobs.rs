//! A job whose deadline has passed (or is nearer than one call to a target may take) is not
//! performed: the agent signs a "not applied" receipt and changes nothing. Such a job waited
//! behind the agent's concurrency limit or arrived late; the control plane has stopped waiting
//! for it, and a statement sent now could land after its check concluded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

mod common;

use std::time::{Duration, SystemTime};

use dsops_agent::store::{Label, SecretStore};
use dsops_proto::domain::StepOutcome;

fn job(deadline: SystemTime) -> dsops_proto::domain::Job {
    common::stage_job("run-0123456789abcdef0123", "{}", deadline)
}

#[tokio::test]
async fn late_jobs_are_not_performed() {
    let common::Local { executor, store, dir: _dir } = common::local_agent();
    let target_timeout = dsops_agent::config::AgentConfig::new().target_timeout;

    let passed = executor.execute(&job(SystemTime::now() - Duration::from_secs(1))).await;
    assert_eq!(passed.body.outcome, StepOutcome::NotApplied);
    assert!(passed.body.detail.contains("deadline passed"), "{}", passed.body.detail);
    let near = executor.execute(&job(SystemTime::now() + target_timeout / 2)).await;
    assert_eq!(near.body.outcome, StepOutcome::NotApplied);
    assert!(
        near.body.detail.contains("were left before the step's deadline"),
        "{}",
        near.body.detail
    );
    assert!(store.read("app/key", Label::Pending).unwrap().is_none(), "nothing was staged");

    // With time enough, the same job is performed.
    let in_time = executor.execute(&job(SystemTime::now() + Duration::from_secs(120))).await;
    assert_eq!(in_time.body.outcome, StepOutcome::Succeeded, "{}", in_time.body.detail);
    assert!(store.read("app/key", Label::Pending).unwrap().is_some());
}
