//! A service's rate limit spreads a bulk rotation: 30 secrets of one service instance with
//! `rate_limit: 5/second` all complete, and no more than 5 of them start (are first dispatched,
//! in log time) in any one second (without the limit they all start within one).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_cli::embedded::random_id;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_state::RunPhase;
use dsops_tests::rotation::Project;
use dsops_tests::{RunView, wait_for};

fn config() -> String {
    let mut yaml = "version: 1
secretStores:
  local: { type: file }
services:
  sessions: { type: app-secret, rate_limit: 5/second }
envs:
  bulk:
"
    .to_owned();
    for i in 0..30 {
        yaml.push_str(&format!(
            "    S{i:02}: {{ from: {{ store: \"store://local/bulk/s{i}#v\", service: \"svc://sessions?kind=session_secret\" }}, rotation: {{ strategy: random, config: {{ length: 32 }} }} }}\n"
        ));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spreads_thirty_rotations_of_one_service() {
    let project = Project::new(&config());
    let embedded = project.open().await;
    let request = wire::RotateRequest {
        request_id: random_id(),
        selector: Some(wire::rotate_request::Selector::AllDueInEnv("bulk".into())),
        force: true,
        dry_run: false,
        reason: "rate limit test".into(),
        only: Vec::new(),
        break_glass: false,
    };
    let started = embedded.admin().rotate(embedded.request(request)).await.unwrap().into_inner();
    let ids: Vec<String> = started.runs.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(ids.len(), 30, "{started:?}");
    let done = wait_for("30 runs to end", Duration::from_secs(60), || async {
        let request = wire::GetRunsRequest { run_ids: ids.clone(), with_steps: false };
        let runs =
            embedded.admin().get_runs(embedded.request(request)).await.ok()?.into_inner().runs;
        runs.iter().all(|r| r.is_finished()).then_some(runs)
    })
    .await;
    assert!(done.iter().all(|r| r.state_name() == "Completed"), "{done:?}");
    let mut starts: Vec<u64> = embedded
        .control()
        .read_local(|s| {
            ids.iter()
                .filter_map(|id| s.runs.get(id))
                .filter_map(|run| {
                    run.transitions
                        .iter()
                        .find(|t| t.phase == RunPhase::Dispatched)
                        .map(|t| t.at_ms)
                })
                .collect()
        })
        .await;
    starts.sort_unstable();
    assert_eq!(starts.len(), 30);
    for (i, at) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|t| **t < at + 1_000).count();
        assert!(in_window <= 5, "{in_window} starts within a second from {at}: {starts:?}");
    }
    let spread = starts[29] - starts[0];
    assert!(spread >= 5_000, "30 starts at 5 per second take 5 s or more, took {spread} ms");
    embedded.close().await;
}
