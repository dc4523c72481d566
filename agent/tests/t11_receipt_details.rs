//! A receipt's detail never carries a value: text from anywhere but the agent's own code (here
//! an error quoting the job's configuration) is searched for the values the job could reach, and
//! they are replaced by `***`; the agent's own texts (literals, names and numbers) go out as
//! they are. (That the search is skipped for them shows in the profile, not here.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::{Duration, SystemTime};

use dsops_agent::config::{AgentConfig, StoreSpec};
use dsops_agent::executor::Executor;
use dsops_agent::identity::AgentIdentity;
use dsops_agent::secret::SecretValue;
use dsops_agent::store::{FileStore, FileStoreOptions, SecretStore};
use dsops_proto::domain::{Generation, Job, RunId, Step, StepOutcome, StoreRef};

const CANARY: &str = "canary-value-0123456789";

fn job(run: &str, config_json: &str) -> Job {
    Job {
        run_id: RunId::parse(run, "run_id").unwrap(),
        generation: Generation::parse(1, "generation").unwrap(),
        step: Step::Stage,
        attempt: 1,
        env: "dev".into(),
        key: "APP_KEY".into(),
        store_ref: StoreRef::parse("store://local/app/key#value").unwrap(),
        service_ref: None,
        strategy: "random".into(),
        config_json: config_json.into(),
        deadline: SystemTime::now() + Duration::from_secs(120),
        checked_step: None,
        restore_previous: false,
        value_format: None,
        trace_parent: None,
    }
}

#[tokio::test]
async fn foreign_text_is_searched_for_values_and_own_text_is_sent_as_it_is() {
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
    let executor = Executor::new(identity, config);
    let store = FileStore::open("local", &options).unwrap();
    store.put("app/key", "value", &SecretValue::new(CANARY.to_owned())).unwrap();

    // The error quotes the configuration, which (as a hostile or careless one may) holds the
    // current value.
    let quoted = format!(r#"{{"charset": "{CANARY}"}}"#);
    let refused = executor.execute(&job("run-0123456789abcdef0123", &quoted)).await;
    assert_eq!(refused.body.outcome, StepOutcome::Refused, "{}", refused.body.detail);
    assert!(!refused.body.detail.contains(CANARY), "{}", refused.body.detail);
    assert!(refused.body.detail.contains("format \"***\""), "{}", refused.body.detail);

    let staged = executor.execute(&job("run-0123456789abcdef0124", "{}")).await;
    assert_eq!(staged.body.outcome, StepOutcome::Succeeded, "{}", staged.body.detail);
    assert_eq!(staged.body.detail, "staged version 2");
}
