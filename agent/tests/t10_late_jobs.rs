//! A job whose deadline has passed (or is nearer than one call to a target may take) is not
//! performed: the agent signs a "not applied" receipt and changes nothing. Such a job waited
//! behind the agent's concurrency limit or arrived late; the control plane has stopped waiting
//! for it, and a statement sent now could land after its check concluded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::{Duration, SystemTime};

use dsops_agent::config::{AgentConfig, StoreSpec};
use dsops_agent::executor::Executor;
use dsops_agent::identity::AgentIdentity;
use dsops_agent::store::{FileStore, FileStoreOptions, Label, SecretStore};
use dsops_proto::domain::{Generation, Job, RunId, Step, StepOutcome, StoreRef};

fn job(deadline: SystemTime) -> Job {
    Job {
        run_id: RunId::parse("run-0123456789abcdef0123", "run_id").unwrap(),
        generation: Generation::parse(1, "generation").unwrap(),
        step: Step::Stage,
        attempt: 1,
        env: "dev".into(),
        key: "APP_KEY".into(),
        store_ref: StoreRef::parse("store://local/app/key#value").unwrap(),
        service_ref: None,
        strategy: "random".into(),
        config_json: "{}".into(),
        deadline,
        checked_step: None,
        restore_previous: false,
        value_format: None,
        trace_parent: None,
    }
}

#[tokio::test]
async fn late_jobs_are_not_performed() {
    let dir = tempfile::tempdir().unwrap();
    let options =
        FileStoreOptions { dir: dir.path().join("store"), key_file: dir.path().join("store.key") };
    let mut config = AgentConfig::new();
    config.stores.insert(
        "local".into(),
        StoreSpec::File { dir: options.dir.clone(), key_file: options.key_file.clone() },
    );
    config.add_secret(&StoreRef::parse("store://local/app/key#value").unwrap(), None);
    let identity =
        AgentIdentity::load_or_create("agent-1", "default", &dir.path().join("agent.key")).unwrap();
    let executor = Executor::new(identity, config.clone());
    let store = FileStore::open("local", &options).unwrap();

    let passed = executor.execute(&job(SystemTime::now() - Duration::from_secs(1))).await;
    assert_eq!(passed.body.outcome, StepOutcome::NotApplied);
    assert!(passed.body.detail.contains("deadline passed"), "{}", passed.body.detail);
    let near = executor.execute(&job(SystemTime::now() + config.target_timeout / 2)).await;
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
