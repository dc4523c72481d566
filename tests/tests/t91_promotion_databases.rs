//! A promotion wave over real database passwords on a 3-node cluster with agents in two
//! segments: dev and staging are PostgreSQL roles rotated by the agent of the default segment,
//! production a MariaDB user rotated by the agent of `seg-b`. The wave is started by dev's
//! schedule, not by hand; the schedule's next firing lands in dev's soak and queues a second
//! wave instead of restarting the clock. At the end every stage's stored password logs in
//! through the server's own client, and the password it replaced no longer does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_control_plane::node::NodeOptions;
use dsops_state::{PromotionLine, RunPhase};
use dsops_tests::agents::AgentProject;
use dsops_tests::cluster::fast_options;
use dsops_tests::databases::{Flavor, TestUser};
use dsops_tests::promotion;
use dsops_tests::rotation::database_service_at;
use dsops_tests::{TestCluster, wait_for};

/// dev soaks longer than the schedule's period, so its next firing lands in the soak.
const DEV_SOAK_MS: u64 = 75_000;

fn config(services: &str, users: [&str; 3]) -> String {
    let var = |env: &str, store: &str, service: &str, user: &str, schedule: &str| {
        format!(
            "  {env}:\n    DB_PASSWORD:\n      from: {{ store: \"store://{store}/{env}/db#password\", service: \"svc://{service}?kind=db_password\" }}\n      rotation: {{ strategy: immediate{schedule}, config: {{ username: {user} }} }}\n"
        )
    };
    format!(
        "version: 1
secretStores:
  local: {{ type: file }}
  local-b: {{ type: file, segment: seg-b }}
services:
{services}rotation:
  promotion:
    - env: dev
      soak: {}s
    - env: staging
      soak: 1s
    - env: production
envs:
{}{}{}",
        DEV_SOAK_MS / 1000,
        var("dev", "local", "pg", users[0], ", schedule: \"* * * * *\""),
        var("staging", "local", "pg", users[1], ""),
        var("production", "local-b", "maria", users[2], ""),
    )
}

async fn line(cluster: &TestCluster) -> PromotionLine {
    promotion::line(cluster, "DB_PASSWORD").await
}

/// The stage's current password logs in through the server's own client; `old` does not.
fn logs_in(flavor: Flavor, user: &TestUser, current: &str, old: &str) {
    assert_eq!(flavor.login_with_client(&user.name, current), Ok(true), "{}", user.name);
    assert_eq!(flavor.login_with_client(&user.name, old), Ok(false), "{}", user.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_wave_rotates_postgres_then_mariadb_and_a_firing_in_the_soak_queues() {
    let initial = "initial-Passw0rd";
    let dev = Flavor::Postgres.create_user("wave_dev", initial, true).await;
    let staging = Flavor::Postgres.create_user("wave_stg", initial, true).await;
    let production = Flavor::MariaDb.create_user("wave_prod", initial, true).await;
    let (pg, pg_admin) = database_service_at(Flavor::Postgres, "pg", None, "local");
    let (maria, maria_admin) =
        database_service_at(Flavor::MariaDb, "maria", Some("seg-b"), "local-b");
    let project = AgentProject::new(&config(
        &format!("{pg}{maria}"),
        [&dev.name, &staging.name, &production.name],
    ));
    // Each agent holds only the admin credential of its own segment's server.
    project.put("a1", "local", "db/admin", "user", &pg_admin.user);
    project.put("a1", "local", "db/admin", "password", &pg_admin.password);
    project.put("a2", "local-b", "db/admin", "user", &maria_admin.user);
    project.put("a2", "local-b", "db/admin", "password", &maria_admin.password);
    let cluster =
        TestCluster::start_with(3, NodeOptions { scheduler: true, ..fast_options() }).await;
    project.apply(&cluster).await;
    let agents = project.start_agents(&cluster, &[("a1", "default"), ("a2", "seg-b")]).await;

    // Nobody asks: dev's schedule starts wave 1 within a minute, and dev soaks.
    let soaking =
        wait_for("the scheduled wave's dev to soak", Duration::from_secs(100), || async {
            let line = line(&cluster).await;
            (line.wave == 1 && line.stages[0].soak_until_ms.is_some()).then_some(line)
        })
        .await;
    let soak_until = soaking.stages[0].soak_until_ms.unwrap();
    let leader = cluster.leader().await;
    let dev_run = soaking.stages[0].run_id.clone().unwrap();
    let reason = cluster.control(leader).read_local(|s| s.runs[&dev_run].reason.clone()).await;
    assert_eq!(reason, "scheduled (* * * * *)");

    // The next firing comes a minute later, inside the soak: it queues wave 2 and the clock
    // stands.
    let queued = wait_for("the next firing to queue", Duration::from_secs(90), || async {
        let line = line(&cluster).await;
        line.queued_at_ms.is_some().then_some(line)
    })
    .await;
    assert_eq!(queued.wave, 1, "{queued:?}");
    assert_eq!(queued.stages[0].soak_until_ms, Some(soak_until), "the soak clock restarted");
    assert!(queued.stages[1].run_id.is_none(), "staging started during dev's soak");
    let leader = cluster.leader().await;
    let audit = cluster.control(leader).audit_history(0, usize::MAX).unwrap().events;
    let event = audit.iter().find(|e| e.action == "promotion.queued").expect("promotion.queued");
    assert!(event.actor.ends_with("scheduler"), "{event:?}");

    // Wave 1 carries on: staging on PostgreSQL, then production on MariaDB in seg-b. Its
    // stages' runs outlive the line's record, which the queued wave replaces when it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let runs = loop {
        let leader = cluster.leader().await;
        let runs = cluster
            .control(leader)
            .read_local(|s| {
                ["dev", "staging", "production"].map(|env| {
                    s.runs
                        .values()
                        .filter(|r| r.env == env && r.key == "DB_PASSWORD")
                        .min_by_key(|r| r.requested_at_ms)
                        .cloned()
                })
            })
            .await;
        if runs.iter().all(|r| r.as_ref().is_some_and(|r| r.finished_at_ms.is_some())) {
            break runs.map(Option::unwrap);
        }
        if std::time::Instant::now() > deadline {
            let shown: Vec<_> = runs
                .iter()
                .flatten()
                .map(|r| {
                    (
                        r.secret(),
                        r.phase,
                        r.step,
                        r.last_error.clone(),
                        r.dispatched.clone(),
                        r.attempt,
                        r.not_before_ms,
                        r.receipts.len(),
                    )
                })
                .collect();
            panic!("wave 1 did not complete: {shown:?}\n{:?}", line(&cluster).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(runs.iter().all(|r| r.phase == RunPhase::Completed), "{runs:?}");
    assert_eq!(runs[0].id, dev_run);
    assert!(runs[1].requested_at_ms >= soak_until, "staging started before dev's soak ended");
    assert!(runs[2].requested_at_ms >= runs[1].finished_at_ms.unwrap() + 1_000);
    let leader = cluster.leader().await;
    let seg_b = cluster
        .control(leader)
        .read_local(|s| {
            s.agents.values().find(|a| a.segment == "seg-b").map(|a| a.agent_id.clone())
        })
        .await
        .unwrap();
    assert!(runs[2].receipts.iter().all(|r| r.agent_id == seg_b), "production ran in seg-b");
    assert!(!runs[2].receipts.is_empty());

    // Every stage's stored password is the one its server accepts.
    let read = |agent: &str, store: &str, env: &str| {
        project.read(agent, store, &format!("{env}/db"), "password").expect("a stored value")
    };
    logs_in(Flavor::Postgres, &staging, &read("a1", "local", "staging"), initial);
    logs_in(Flavor::MariaDb, &production, &read("a2", "local-b", "production"), initial);
    let wave1_dev = read("a1", "local", "dev");
    logs_in(Flavor::Postgres, &dev, &wave1_dev, initial);

    // The queued wave starts by itself once wave 1 ends, and rotates dev again.
    let second = wait_for("wave 2's dev to complete", Duration::from_secs(60), || async {
        let line = line(&cluster).await;
        (line.wave == 2 && line.stages[0].ended.is_some()).then_some(line)
    })
    .await;
    assert_eq!(second.stages[0].ended.unwrap().1, RunPhase::Completed, "{second:?}");
    logs_in(Flavor::Postgres, &dev, &read("a1", "local", "dev"), &wave1_dev);

    cluster.shutdown().await;
    drop(agents);
    for user in [dev, staging, production] {
        user.drop_user().await;
    }
}
