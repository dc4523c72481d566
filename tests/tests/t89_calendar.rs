//! Calendars on a 3-node cluster with its scheduler and a remote agent: a scheduled start is
//! offset by the secret's jitter — the same offset on every node — and a blackout holds an
//! environment: its firings start nothing, and `dsops rotate --force` is refused there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use chrono::Utc;
use dsops_config::config::calendar::jitter_ms;
use dsops_control_plane::node::NodeOptions;
use dsops_control_plane::rotation::scheduler::Timing;
use dsops_proto::wire::admin as wire;
use dsops_tests::agents::AgentProject;
use dsops_tests::cluster::fast_options;
use dsops_tests::rotation::rotate_request;
use dsops_tests::{TestCluster, wait_for};

const MINUTE_MS: u64 = 60_000;

fn config() -> String {
    let now = Utc::now();
    let from = (now - chrono::TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M");
    let to = (now + chrono::TimeDelta::hours(2)).format("%Y-%m-%dT%H:%M");
    let var = |env: &str| {
        format!(
            "    EVERY_MINUTE:\n      from: {{ store: \"store://local/{env}/minute#key\" }}\n      rotation: {{ strategy: random, schedule: \"* * * * *\", config: {{ length: 40 }} }}\n"
        )
    };
    format!(
        "version: 1
secretStores:
  local: {{ type: file }}
rotation:
  defaults: {{ jitter: 30s }}
  blackouts:
    - {{ name: freeze, from: \"{from}\", to: \"{to}\", envs: [prod] }}
envs:
  dev:
{}  prod:
{}",
        var("dev"),
        var("prod")
    )
}

/// Runs of `env/EVERY_MINUTE`: (requested at, reason).
async fn runs(cluster: &TestCluster, env: &str) -> Vec<(u64, String)> {
    let leader = cluster.leader().await;
    let id = format!("{env}/EVERY_MINUTE");
    cluster
        .control(leader)
        .read_local(|s| {
            s.runs
                .values()
                .filter(|r| format!("{}/{}", r.env, r.key) == id)
                .map(|r| (r.requested_at_ms, r.reason.clone()))
                .collect()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jitter_offsets_scheduled_starts_alike_everywhere_and_a_blackout_holds_its_environment() {
    let project = AgentProject::new(&config());
    let cluster =
        TestCluster::start_with(3, NodeOptions { scheduler: true, ..fast_options() }).await;
    project.apply(&cluster).await;
    let agents = project.start_agents(&cluster, &[("a", "default")]).await;

    // Every node computes the same offset from the configuration it applied.
    let offset = jitter_ms(project.loaded().config.rotation.defaults.jitter, "dev", "EVERY_MINUTE");
    assert!(offset < 30_000);
    for id in cluster.ids() {
        let loaded =
            wait_for("the node to apply the configuration", Duration::from_secs(10), || async {
                let stored =
                    cluster.control(id).read_local(|s| s.current_config().cloned()).await?;
                dsops_config::config::load_with(
                    &stored.config_yaml,
                    &stored.config_path,
                    dsops_config::config::CatalogFiles::Given(&stored.catalog_files),
                )
                .ok()
            })
            .await;
        let item = loaded.resolved().into_iter().find(|i| i.secret.env == "dev").unwrap();
        assert_eq!(Timing::of(&loaded, &item).unwrap().jitter_ms, offset, "node {id}");
    }

    // dev starts at a firing plus its offset, not at the firing.
    let first = wait_for("dev's first scheduled run", Duration::from_secs(100), || async {
        runs(&cluster, "dev").await.into_iter().next()
    })
    .await;
    assert!(first.1.starts_with("scheduled"), "{first:?}");
    let into_minute = first.0 % MINUTE_MS;
    assert!(
        into_minute >= offset && into_minute < offset + 10_000,
        "started {into_minute} ms into the minute; the offset is {offset} ms"
    );

    // prod's firings passed in the blackout: nothing started, and --force is refused.
    assert!(runs(&cluster, "prod").await.is_empty(), "the blackout holds prod");
    let leader = cluster.leader().await;
    let refused = cluster
        .admin_client(leader)
        .rotate(wire::RotateRequest { force: true, ..rotate_request("prod", "EVERY_MINUTE") })
        .await
        .unwrap_err();
    assert!(refused.message().contains("is in blackout freeze until"), "{refused:?}");
    assert!(refused.message().contains("only --break-glass"), "{refused:?}");
    assert!(runs(&cluster, "prod").await.is_empty());
    drop(agents);
    cluster.shutdown().await;
}
