//! Promotion gates on a 3-node cluster with agents in two segments: a SQL check on the real
//! PostgreSQL (run by the agent of the default segment with its admin credential) gates
//! staging, an HTTP check on a real HTTP endpoint (run by the agent of `seg-a`) gates
//! production through staging's soak. When the endpoint goes bad, two failing probes in a row
//! halt the line before production, `dsops promotion status` says why, and production starts
//! only after the endpoint recovers and an operator resumes the line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::sync::atomic::Ordering;
use std::time::Duration;

use dsops_proto::wire::admin as wire;
use dsops_state::{GateVerdict, HaltKind, PromotionLine};
use dsops_tests::agents::AgentProject;
use dsops_tests::databases::Flavor;
use dsops_tests::promotion;
use dsops_tests::receivers::switchable;
use dsops_tests::rotation::{database_service_at, rotate_request};
use dsops_tests::{TestCluster, wait_for};

fn config(service: &str, api_port: u16) -> String {
    let var = |env: &str| {
        format!(
            "    API_KEY:\n      from: {{ store: \"store://local/{env}/api#key\" }}\n      rotation: {{ strategy: random, config: {{ length: 24 }} }}\n"
        )
    };
    format!(
        "version: 1
secretStores:
  local: {{ type: file }}
services:
{service}rotation:
  promotion:
    - env: dev
      soak: 1s
      gates: [db-ready]
    - env: staging
      soak: 1s
      gates: [staging-api]
    - env: production
health:
  db-ready: {{ type: sql, service: db, query: \"select 41 + 1\", expect: \"42\", every: 5s }}
  staging-api: {{ type: http, segment: seg-a, url: \"http://127.0.0.1:{api_port}/healthz\", expect: 200, every: 5s, failures: 2 }}
envs:
  dev:
{}  staging:
{}  production:
{}",
        var("dev"),
        var("staging"),
        var("production")
    )
}

async fn line(cluster: &TestCluster) -> PromotionLine {
    promotion::line(cluster, "API_KEY").await
}

async fn status(cluster: &TestCluster) -> wire::PromotionLineStatus {
    promotion::status(cluster, "API_KEY").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_pass_hold_and_halt_a_wave_with_checks_run_by_the_agents_of_their_segments() {
    let (api_port, probes, answer) = switchable(200).await;
    let (service, admin) = database_service_at(Flavor::Postgres, "db", None, "local");
    let project = AgentProject::new(&config(&service, api_port));
    project.put("a1", "local", "db/admin", "user", &admin.user);
    project.put("a1", "local", "db/admin", "password", &admin.password);
    let cluster = TestCluster::start(3).await;
    project.apply(&cluster).await;
    let _agents = project.start_agents(&cluster, &[("a1", "default"), ("a2", "seg-a")]).await;
    let leader = cluster.leader().await;

    cluster.admin_client(leader).rotate(rotate_request("dev", "API_KEY")).await.unwrap();
    // The SQL gate runs on PostgreSQL with the agent's admin credential and passes; staging
    // starts, and so does the HTTP gate's watch over it.
    let started = wait_for("staging to start", Duration::from_secs(60), || async {
        let line = line(&cluster).await;
        line.stages[1].run_id.is_some().then_some(line)
    })
    .await;
    let leader = cluster.leader().await;
    let gates = cluster.control(leader).read_local(|s| s.gates.clone()).await;
    let db = &gates["db-ready"];
    assert_eq!(db.verdict, GateVerdict::Pass, "{db:?}");
    assert!(db.history.back().unwrap().detail.contains("expected value"), "{db:?}");
    let default_agent = agents_id(&cluster, "default").await;
    assert!(db.history.iter().all(|p| p.agent_id == default_agent), "{db:?}");
    let dev_done = started.stages[0].ended.unwrap().0;
    let db_at = db.at_ms();
    assert!(db_at >= dev_done, "a verdict from before dev completed does not count");

    // The endpoint goes bad during staging's soak: production waits, then the line halts.
    answer.store(503, Ordering::SeqCst);
    let halted = wait_for("the gate to halt the line", Duration::from_secs(60), || async {
        let line = line(&cluster).await;
        line.halted.is_some().then_some(line)
    })
    .await;
    let halt = halted.halted.unwrap();
    assert_eq!(halt.kind, HaltKind::Gate);
    assert!(halt.reason.contains("gate staging-api fail: status 503 (expected 200)"), "{halt:?}");
    assert!(halted.stages[2].run_id.is_none(), "production did not start");
    let shown = status(&cluster).await;
    assert_eq!(shown.stages[2].state, "halted", "{shown:?}");
    assert!(shown.halted.contains("staging-api"), "{shown:?}");
    let api = cluster
        .control(cluster.leader().await)
        .read_local(|s| s.gates["staging-api"].clone())
        .await;
    let seg_a_agent = agents_id(&cluster, "seg-a").await;
    assert!(api.history.iter().all(|p| p.agent_id == seg_a_agent), "{api:?}");
    assert!(probes.lock().unwrap().len() >= 3, "the endpoint was probed");

    // It recovers; an operator resumes the line; the next passing probe lets production start.
    answer.store(200, Ordering::SeqCst);
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .resume_promotion(wire::HaltPromotionRequest {
            line: "API_KEY".into(),
            all: false,
            reason: "endpoint fixed".into(),
            request_id: dsops_cli::embedded::random_id(),
        })
        .await
        .unwrap();
    let done = wait_for("the wave to complete", Duration::from_secs(60), || async {
        let line = line(&cluster).await;
        line.finished_at_ms.is_some().then_some(line)
    })
    .await;
    assert!(done.halted.is_none());
    let leader = cluster.leader().await;
    let audit = cluster.control(leader).audit_history(0, usize::MAX).unwrap().events;
    let gate_events: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.action.starts_with("gate.") && e.subject == "staging-api")
        .map(|e| (e.action.as_str(), e.detail.as_str()))
        .collect();
    let actions: Vec<&str> = gate_events.iter().map(|(a, _)| *a).collect();
    assert_eq!(actions.first(), Some(&"gate.pass"), "{gate_events:?}");
    assert!(actions.contains(&"gate.fail"), "{gate_events:?}");
    assert_eq!(actions.last(), Some(&"gate.pass"), "{gate_events:?}");
    cluster.shutdown().await;
}

/// The id of the agent of `segment`.
async fn agents_id(cluster: &TestCluster, segment: &str) -> String {
    let leader = cluster.leader().await;
    cluster
        .control(leader)
        .read_local(|s| {
            s.agents.values().find(|a| a.segment == segment).map(|a| a.agent_id.clone())
        })
        .await
        .expect("an agent of the segment")
}
