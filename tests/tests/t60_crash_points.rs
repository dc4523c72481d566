//! Crash safety: the agent dies right after performing each step (stage, apply, verify, promote,
//! and retire for two-key and overlap) — its receipt lost — and either the agent restarts or the
//! whole control plane is killed and restarted from disk. For `immediate` and `two-key` on
//! PostgreSQL, MariaDB and Redis, and `overlap` on Redis.
//!
//! While each run goes on, a watcher logs in again and again with the store's current value (or,
//! mid-run, its pending value): it must always work. After recovery the run ends Completed (or
//! RolledBack) and the current value logs in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::Login;
use dsops_agent::store::Label;
use dsops_cli::embedded::{Embedded, EmbeddedOptions, random_id};
use dsops_proto::domain::{Job, Step};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::databases::{Flavor, TestUser};
use dsops_tests::probe::current_or_pending_works;
use dsops_tests::rotation::{Project, database_service, wait_run};
use dsops_tests::wait_for;

const STEPS: [Step; 5] = [Step::Stage, Step::Apply, Step::Verify, Step::Promote, Step::Retire];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    RestartAgent,
    RestartControlPlane,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Immediate,
    TwoKey,
    Overlap,
}

/// Logs in with the store's current value, else its pending one ([`current_or_pending_works`]).
async fn some_value_works(
    project: &Project,
    flavor: Flavor,
    strategy: Strategy,
    users: &[String],
) -> Result<(), String> {
    let store = project.store();
    current_or_pending_works(store.as_ref(), "app/db", |_, fields| async move {
        let password = fields.get("password").ok_or("no password")?;
        let user = match strategy {
            Strategy::Immediate | Strategy::Overlap => users[0].clone(),
            Strategy::TwoKey => {
                fields.get("username").map(|u| u.expose().to_owned()).unwrap_or_default()
            }
        };
        if login(flavor, &user, password).await == Login::Accepted {
            Ok(())
        } else {
            Err(format!("refused as {user}"))
        }
    })
    .await
}

async fn login(flavor: Flavor, user: &str, password: &SecretValue) -> Login {
    flavor.login(user, password).await.unwrap_or(Login::Refused)
}

struct Bed {
    project: Arc<Project>,
    users: Vec<TestUser>,
    names: Vec<String>,
}

async fn bed(flavor: Flavor, strategy: Strategy) -> Bed {
    let initial = "Crash-initial-password-0000000000";
    let (service, admin) = database_service(flavor);
    let (users, rotation) = match strategy {
        Strategy::Immediate => {
            let user = flavor.create_user("t60_i", initial, false).await;
            let rotation =
                format!("{{ strategy: immediate, config: {{ username: {} }} }}", user.name);
            (vec![user], rotation)
        }
        Strategy::Overlap => {
            let user = flavor.create_user("t60_o", initial, false).await;
            let rotation =
                format!("{{ strategy: overlap, config: {{ username: {} }} }}", user.name);
            (vec![user], rotation)
        }
        Strategy::TwoKey => {
            let a = flavor.create_user("t60_a", initial, true).await;
            let b = flavor.create_user("t60_b", "Crash-other-password-00000000000", true).await;
            let rotation = format!(
                "{{ strategy: two-key, config: {{ usernames: [{}, {}] }} }}",
                a.name, b.name
            );
            (vec![a, b], rotation)
        }
    };
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}rotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  dev:\n    DB:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind={kind}\" }}\n      rotation: {rotation}\n",
        kind = flavor.kind()
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project.put("app/db", "password", initial);
    if strategy == Strategy::TwoKey {
        project.put("app/db", "username", &users[0].name);
    }
    let names = users.iter().map(|u| u.name.clone()).collect();
    Bed { project: Arc::new(project), users, names }
}

/// Opens the embedded control plane, retrying while a killed one still holds its files.
async fn reopen(project: &Project, options: EmbeddedOptions) -> Embedded {
    wait_for("the embedded control plane to reopen", Duration::from_secs(20), || {
        let options = options.clone();
        async move {
            Embedded::open_with(&project.state, &project.config, &project.loaded(), options)
                .await
                .ok()
        }
    })
    .await
}

/// One crash scenario; returns how many invariant checks the watcher made.
async fn scenario(
    flavor: Flavor,
    strategy: Strategy,
    bed: &Bed,
    crash_at: Step,
    recovery: Recovery,
) -> usize {
    let fired = Arc::new(AtomicBool::new(false));
    let crashed_job: Arc<Mutex<Option<Job>>> = Arc::default();
    let hook = {
        let (fired, crashed_job) = (fired.clone(), crashed_job.clone());
        Arc::new(move |job: &Job, _: &dsops_proto::domain::SignedReceipt| {
            if job.step == crash_at && !fired.swap(true, Ordering::SeqCst) {
                *crashed_job.lock().unwrap() = Some(job.clone());
                return true;
            }
            false
        })
    };
    let options = EmbeddedOptions { crash: Some(hook), tune_agent: None, ..Default::default() };
    let mut embedded = reopen(&bed.project, options).await;

    // The watcher: the invariant at every instant it can observe.
    let stop = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let watcher = {
        let (stop, checks, failures) = (stop.clone(), checks.clone(), failures.clone());
        let project = bed.project.clone();
        let names = bed.names.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if let Err(why) = some_value_works(&project, flavor, strategy, &names).await {
                    failures.lock().unwrap().push(why);
                }
                checks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let request = wire::RotateRequest {
        request_id: random_id(),
        selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
            env: "dev".into(),
            key: "DB".into(),
        })),
        force: true,
        dry_run: false,
        reason: "crash test".into(),
        only: Vec::new(),
        break_glass: false,
    };
    let run_id =
        embedded.admin().rotate(embedded.request(request)).await.unwrap().into_inner().runs[0]
            .run_id
            .clone();
    wait_for("the crash point", Duration::from_secs(60), || async {
        fired.load(Ordering::SeqCst).then_some(())
    })
    .await;
    // The moment of the crash: something stored must work.
    some_value_works(&bed.project, flavor, strategy, &bed.names)
        .await
        .unwrap_or_else(|why| panic!("{flavor:?} {strategy:?} crash after {crash_at}: {why}"));

    embedded = match recovery {
        Recovery::RestartAgent => {
            embedded.restart_agents().await.unwrap();
            embedded
        }
        Recovery::RestartControlPlane => {
            embedded.kill();
            reopen(&bed.project, EmbeddedOptions::default()).await
        }
    };
    let run = wait_run(&embedded, &run_id).await;
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{flavor:?} {strategy:?} crash after {crash_at} ({recovery:?}): {failures:?}"
    );
    assert!(
        matches!(run.state_name(), "Completed" | "RolledBack"),
        "{flavor:?} {strategy:?} crash after {crash_at} ({recovery:?}): {run:?}"
    );
    // The lost receipt's step was performed again (idempotently) or resolved by a check.
    let crashed = crashed_job.lock().unwrap().clone().unwrap();
    assert!(
        run.steps
            .iter()
            .any(|s| s.step_name() == crash_at.to_string()
                || s.checked_name() == crash_at.to_string()),
        "{run:?}"
    );
    assert_eq!(crashed.run_id.as_str(), run_id);
    some_value_works(&bed.project, flavor, strategy, &bed.names).await.unwrap();
    assert!(
        bed.project.read("app/db", "password", Label::Pending).is_none(),
        "no pending value is left behind"
    );
    embedded.close().await;
    checks.load(Ordering::SeqCst)
}

async fn all_crash_points(flavor: Flavor, strategy: Strategy) {
    let bed = bed(flavor, strategy).await;
    let mut points = 0;
    let mut checks = 0;
    // `immediate` has no retire step: the old password stopped working at apply.
    let steps = if strategy == Strategy::Immediate { &STEPS[..4] } else { &STEPS[..] };
    for &step in steps {
        for recovery in [Recovery::RestartAgent, Recovery::RestartControlPlane] {
            checks += scenario(flavor, strategy, &bed, step, recovery).await;
            points += 1;
        }
    }
    assert_eq!(points, steps.len() * 2);
    assert!(checks >= points, "the watcher ran");
    eprintln!("{flavor:?} {strategy:?}: {points} crash points, {checks} invariant checks");
    for user in &bed.users {
        user.drop_user().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_immediate_crash_points() {
    all_crash_points(Flavor::Postgres, Strategy::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_key_crash_points() {
    all_crash_points(Flavor::Postgres, Strategy::TwoKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_immediate_crash_points() {
    all_crash_points(Flavor::MariaDb, Strategy::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_two_key_crash_points() {
    all_crash_points(Flavor::MariaDb, Strategy::TwoKey).await;
}

/// The invariant check itself can fail: a store whose values do not log in is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_immediate_crash_points() {
    all_crash_points(Flavor::Redis, Strategy::Immediate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_key_crash_points() {
    all_crash_points(Flavor::Redis, Strategy::TwoKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_overlap_crash_points() {
    all_crash_points(Flavor::Redis, Strategy::Overlap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_catches_a_broken_invariant() {
    let bed = bed(Flavor::Postgres, Strategy::Immediate).await;
    some_value_works(&bed.project, Flavor::Postgres, Strategy::Immediate, &bed.names)
        .await
        .unwrap();
    bed.project.put("app/db", "password", "Not-the-password-000000000000000");
    let error = some_value_works(&bed.project, Flavor::Postgres, Strategy::Immediate, &bed.names)
        .await
        .unwrap_err();
    assert!(error.contains("no stored value of app/db works"), "{error}");
    for user in &bed.users {
        user.drop_user().await;
    }
}
