//! An executor with one file store `local` holding the secret `store://local/app/key#value`, and
//! `random` stage jobs for it: what the executor's own tests start from.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::SystemTime;

use dsops_agent::config::{AgentConfig, StoreSpec};
use dsops_agent::executor::Executor;
use dsops_agent::identity::AgentIdentity;
use dsops_agent::store::{FileStore, FileStoreOptions};
use dsops_proto::domain::{Generation, Job, RunId, Step, StoreRef};

/// The secret every job here rotates.
pub const SECRET: &str = "store://local/app/key#value";

/// An executor (default configuration but the store) and the store it writes, in `dir`: keep
/// it bound for as long as they are used.
pub struct Local {
    pub executor: Executor,
    pub store: FileStore,
    pub dir: tempfile::TempDir,
}

pub fn local_agent() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let options =
        FileStoreOptions { dir: dir.path().join("store"), key_file: dir.path().join("store.key") };
    let mut config = AgentConfig::new();
    config.stores.insert(
        "local".into(),
        StoreSpec::File { dir: options.dir.clone(), key_file: options.key_file.clone() },
    );
    config.add_secret(&StoreRef::parse(SECRET).unwrap(), None);
    let identity =
        AgentIdentity::load_or_create("agent-1", "default", &dir.path().join("agent.key")).unwrap();
    let executor = Executor::new(identity, config);
    let store = FileStore::open("local", &options).unwrap();
    Local { executor, store, dir }
}

/// A `random` stage of [`SECRET`] by run `run`, with rotation config `config_json`.
pub fn stage_job(run: &str, config_json: &str, deadline: SystemTime) -> Job {
    Job {
        run_id: RunId::parse(run, "run_id").unwrap(),
        generation: Generation::parse(1, "generation").unwrap(),
        step: Step::Stage,
        attempt: 1,
        env: "dev".into(),
        key: "APP_KEY".into(),
        store_ref: StoreRef::parse(SECRET).unwrap(),
        service_ref: None,
        strategy: "random".into(),
        config_json: config_json.into(),
        deadline,
        checked_step: None,
        restore_previous: false,
        value_format: None,
        trace_parent: None,
        time_left: None,
    }
}
