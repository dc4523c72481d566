//! A job may touch only the store entry its secret is configured with. The control plane sends
//! references; a compromised one could name an admin credential's entry as the secret of a run,
//! to overwrite it (`random`) or hand it to a target. The agent judges every job against its own
//! configuration, as `dsops-agent run --allow-service pg` builds it, and refuses the rest with a
//! signed receipt, changing nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use dsops_agent::executor::Executor;
use dsops_agent::identity::AgentIdentity;
use dsops_agent::store::Label;
use dsops_proto::domain::{Generation, Job, RunId, ServiceRef, Step, StepOutcome, StoreRef};
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::{Project, database_service_at};

fn job(strategy: &str, store: &str, service: Option<&str>, config: &str) -> Job {
    Job {
        run_id: RunId::parse("run-0123456789abcdef0123", "run_id").unwrap(),
        generation: Generation::parse(1, "generation").unwrap(),
        step: Step::Stage,
        attempt: 1,
        env: "prod".into(),
        key: "DB".into(),
        store_ref: StoreRef::parse(store).unwrap(),
        service_ref: service.map(|s| ServiceRef::parse(s).unwrap()),
        strategy: strategy.into(),
        config_json: config.into(),
        deadline: SystemTime::now() + Duration::from_secs(120),
        checked_step: None,
        restore_previous: false,
        value_format: None,
        trace_parent: None,
        time_left: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_for_entries_outside_the_configuration_are_refused() {
    let flavor = Flavor::Postgres;
    let user = flavor.create_user("entries", "Initial-password-0000000000000001", true).await;
    let (service, admin) = database_service_at(flavor, "pg", None, "local");
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}envs:\n  prod:\n    DB:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://pg?kind=db_password\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {} }} }}\n    TOKEN:\n      from: {{ store: \"store://local/app/token#value\" }}\n      rotation: {{ strategy: random }}\n",
        user.name
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", "Initial-password-0000000000000001");

    // The configuration `dsops-agent run --allow-service pg` runs with.
    let (mut config, _) = dsops_agent::host::local_config(
        &project.loaded(),
        "default",
        &project.state,
        project.dir.path(),
    )
    .unwrap();
    config.policy.services = Some(BTreeSet::from(["pg".to_owned()]));
    let identity =
        AgentIdentity::load_or_create("agent-1", "default", &project.state.join("agent.key"))
            .unwrap();
    let executor = Executor::new(identity, config.clone());
    let immediate = format!("{{\"username\": \"{}\"}}", user.name);

    let refused = [
        // The admin credential's entry, as the secret of a run against its own service.
        (
            job(
                "immediate",
                "store://local/db/admin#password",
                Some("svc://pg?kind=db_password"),
                &immediate,
            ),
            "admin credential of service pg",
        ),
        // The same entry as an application secret with no target.
        (job("random", "store://local/db/admin#password", None, "{}"), "limited to named services"),
        // An entry that is no secret of this configuration.
        (
            job(
                "immediate",
                "store://local/app/other#password",
                Some("svc://pg?kind=db_password"),
                &immediate,
            ),
            "not a secret in this agent's configuration",
        ),
    ];
    for (job, why) in &refused {
        let receipt = executor.execute(job).await;
        assert_eq!(receipt.body.outcome, StepOutcome::Refused, "{job:?}");
        assert!(receipt.body.detail.contains(why), "{}", receipt.body.detail);
    }
    // Without the service limit the entry check alone still refuses the admin entry, and a
    // configured secret's entry against no service.
    let mut open = config.clone();
    open.policy.services = None;
    let unlimited = Executor::new(
        AgentIdentity::load_or_create("agent-2", "default", &project.state.join("agent2.key"))
            .unwrap(),
        open,
    );
    let receipt =
        unlimited.execute(&job("random", "store://local/db/admin#password", None, "{}")).await;
    assert_eq!(receipt.body.outcome, StepOutcome::Refused);
    assert!(receipt.body.detail.contains("admin credential"), "{}", receipt.body.detail);
    let receipt =
        unlimited.execute(&job("random", "store://local/app/db#password", None, "{}")).await;
    assert_eq!(receipt.body.outcome, StepOutcome::Refused);
    assert!(
        receipt.body.detail.contains("not no service")
            || receipt.body.detail.contains("against service pg"),
        "{}",
        receipt.body.detail
    );

    // Nothing was staged anywhere; the admin credential is as it was.
    let store = project.store();
    for entry in ["db/admin", "app/db", "app/other"] {
        assert!(store.read(entry, Label::Pending).unwrap().is_none(), "{entry}");
    }
    assert_eq!(project.read("db/admin", "password", Label::Current).unwrap(), admin.password);

    // The configured secret, against its service, is performed.
    let real = job(
        "immediate",
        "store://local/app/db#password",
        Some("svc://pg?kind=db_password"),
        &immediate,
    );
    let receipt = executor.execute(&real).await;
    assert_eq!(receipt.body.outcome, StepOutcome::Succeeded, "{}", receipt.body.detail);
    assert!(store.read("app/db", Label::Pending).unwrap().is_some());
    user.drop_user().await;
}
