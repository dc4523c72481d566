//! Promotion waves on a 3-node cluster with a remote agent: `dsops rotate` of production starts
//! the wave at dev (a later stage never jumps ahead); each stage starts by itself once the
//! previous one completed and soaked, counted in log time from its completion — also when the
//! leader is killed mid-soak; a first-stage rotation during a soak queues a new wave instead of
//! restarting the clock; a halted line starts nothing until it is resumed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_proto::wire::admin as wire;
use dsops_state::{PromotionLine, RunPhase};
use dsops_tests::agents::{AgentProject, agent_token, enroll, wait_connected};
use dsops_tests::promotion;
use dsops_tests::rotation::rotate_request;
use dsops_tests::{RunView, TestCluster, wait_for};

/// dev soaks 3 s, staging 2 s.
const DEV_SOAK: u64 = 3_000;
const STAGING_SOAK: u64 = 2_000;

fn config() -> String {
    let var = |env: &str| {
        format!(
            "    API_KEY:\n      from: {{ store: \"store://local/{env}/api#key\" }}\n      rotation: {{ strategy: random, config: {{ length: 24 }} }}\n"
        )
    };
    format!(
        "version: 1
secretStores:
  local: {{ type: file }}
rotation:
  promotion:
    - env: dev
      soak: 3s
    - env: staging
      soak: 2s
    - env: production
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

fn states(line: &wire::PromotionLineStatus) -> Vec<String> {
    line.stages.iter().map(|s| s.state.clone()).collect()
}

async fn rotate(cluster: &TestCluster, env: &str) -> wire::RotateResponse {
    let leader = cluster.leader().await;
    cluster.admin_client(leader).rotate(rotate_request(env, "API_KEY")).await.unwrap().into_inner()
}

async fn wave_done(cluster: &TestCluster, wave: u64) -> PromotionLine {
    wait_for(&format!("wave {wave} to complete"), Duration::from_secs(60), || async {
        let line = line(cluster).await;
        (line.wave == wave && line.finished_at_ms.is_some()).then_some(line)
    })
    .await
}

/// When stage `i` of `line` started (its run's request, log time).
async fn requested_at(cluster: &TestCluster, line: &PromotionLine, i: usize) -> u64 {
    let run_id = line.stages[i].run_id.clone().expect("started");
    let leader = cluster.leader().await;
    cluster.control(leader).read_local(|s| s.runs[&run_id].requested_at_ms).await
}

async fn halt(cluster: &TestCluster, resume: bool) {
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);
    let request = wire::HaltPromotionRequest {
        line: "API_KEY".into(),
        all: false,
        reason: "INC-88".into(),
        request_id: dsops_cli::embedded::random_id(),
    };
    if resume {
        admin.resume_promotion(request).await.unwrap();
    } else {
        admin.halt_promotion(request).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_goes_stage_by_stage_after_each_soak_across_a_leader_change_and_halts() {
    let mut cluster = TestCluster::start(3).await;
    let project = AgentProject::new(&config());
    project.apply(&cluster).await;
    // The agent knows every node, so it follows the leader across the kill below.
    let leader = cluster.leader().await;
    let token = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("a1"), cluster.address(leader), &token).await.unwrap();
    let addresses: Vec<&str> = cluster.ids().iter().map(|&id| cluster.address(id)).collect();
    let agent = project.start("a1", &addresses);
    wait_connected(&agent).await;

    // Production asked first: the wave starts at dev; production waits its turn.
    let response = rotate(&cluster, "production").await;
    let rows: Vec<(String, String)> = response
        .runs
        .iter()
        .map(|r| (r.secret.as_ref().unwrap().env.clone(), r.state_name().to_owned()))
        .collect();
    assert_eq!(rows[0], ("production".to_owned(), "Waiting".to_owned()), "{response:?}");
    assert!(response.runs[0].detail.contains("starts wave 1 of line API_KEY at dev/API_KEY"));
    assert_eq!(rows[1].0, "dev");

    // dev completes and soaks; staging waits for it, and says so.
    let soaking = wait_for("dev to soak", Duration::from_secs(30), || async {
        let status = status(&cluster).await;
        (states(&status) == ["soaking", "waiting", "waiting"]).then_some(status)
    })
    .await;
    assert!(soaking.stages[1].detail.contains("dev/API_KEY soaks until"), "{soaking:?}");
    // Asking for staging now joins the wave instead of jumping ahead.
    let joined = rotate(&cluster, "staging").await;
    assert_eq!(joined.runs[0].state_name(), "Waiting");
    assert!(joined.runs[0].detail.contains("joins wave 1"), "{joined:?}");
    // The leader dies mid-soak; the next one starts staging at the committed time.
    let old = cluster.leader().await;
    cluster.kill(old).await;
    let first = wave_done(&cluster, 1).await;
    let dev_done = first.stages[0].ended.unwrap().0;
    let staging_at = requested_at(&cluster, &first, 1).await;
    assert!(staging_at >= dev_done + DEV_SOAK, "staging started before dev's soak ended");
    assert!(
        staging_at < dev_done + DEV_SOAK + 15_000,
        "the soak clock restarted: {staging_at} vs {dev_done}"
    );
    let staging_done = first.stages[1].ended.unwrap().0;
    let production_at = requested_at(&cluster, &first, 2).await;
    assert!(production_at >= staging_done + STAGING_SOAK);
    assert!(first.stages.iter().all(|s| s.ended.unwrap().1 == RunPhase::Completed));
    assert_eq!(states(&status(&cluster).await), ["done", "done", "done"]);

    // Wave 2; dev asked again during dev's soak queues wave 3 (the clock stands).
    let second = rotate(&cluster, "dev").await;
    assert!(!second.runs[0].run_id.is_empty(), "{second:?}");
    let soaking = wait_for("wave 2's dev to soak", Duration::from_secs(30), || async {
        let line = line(&cluster).await;
        (line.wave == 2 && line.stages[0].soak_until_ms.is_some()).then_some(line)
    })
    .await;
    let queued = rotate(&cluster, "dev").await;
    assert_eq!(queued.runs[0].state_name(), "Waiting", "{queued:?}");
    assert!(queued.runs[0].detail.contains("queued"), "{queued:?}");
    assert_eq!(line(&cluster).await.stages[0].soak_until_ms, soaking.stages[0].soak_until_ms);

    // Stop the line during the soak: staging does not start after it.
    halt(&cluster, false).await;
    tokio::time::sleep(Duration::from_millis(DEV_SOAK + 2_000)).await;
    let held = line(&cluster).await;
    assert!(held.stages[1].run_id.is_none(), "a halted line starts nothing");
    let shown = status(&cluster).await;
    assert!(shown.halted.contains("INC-88"), "{shown:?}");
    assert_eq!(states(&shown), ["done", "halted", "waiting"]);
    halt(&cluster, true).await;
    wave_done(&cluster, 2).await;
    // The queued wave follows by itself.
    wave_done(&cluster, 3).await;
    assert!(!status(&cluster).await.queued);

    // A configuration that violates a policy it enforces is refused, every violation listed,
    // nothing stored.
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader);
    let before = admin.get_config(wire::GetConfigRequest {}).await.unwrap().into_inner().version;
    let strict = config().replace(
        "rotation:\n",
        "policies:\n  strict: { maxAge: 30d, minLength: 32 }\nrotation:\n  enforce: [strict]\n",
    );
    let refused = admin
        .apply_config(wire::ApplyConfigRequest {
            request_id: dsops_cli::embedded::random_id(),
            config_yaml: strict,
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    for env in ["dev", "staging", "production"] {
        let line = format!(
            "envs.{env}.API_KEY: violates enforced policy strict: minLength: requires 32, has 24"
        );
        assert!(refused.message().contains(&line), "{line:?} in {}", refused.message());
    }
    assert!(refused.message().contains("schedule: requires at least every 30d, has none"));
    let after = admin.get_config(wire::GetConfigRequest {}).await.unwrap().into_inner().version;
    assert_eq!(after, before, "nothing stored");
    cluster.shutdown().await;
}
