//! The notification outbox on a 3-node cluster: the leader's notifier turns audit events into
//! deliveries for the targets the configuration names (policy, defaults, installation names,
//! `log:`), one per event and channel with a stable id, and moves its replicated cursor in the
//! same entry — so after the leader is killed the next one carries on without repeating or
//! skipping an event. (Delivery by agents is the next part; deliveries here stay pending.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeMap;
use std::time::Duration;

use dsops_proto::wire::admin as wire;
use dsops_tests::agents::{AgentProject, enrolled_agent, rotate};
use dsops_tests::{RunView, TestCluster, wait_for};

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
rotation:
  defaults:
    notification:
      on_success: [\"webhook:hook\", \"log:audit\"]
      on_failure: [payments-team]
notifications:
  channels:
    hook: { type: webhook, url: \"https://hooks.example.com/dsops\", credential: \"store://local/notify/hook#secret\" }
    chat: { type: slack, channel: \"#payments\", segment: seg-b, credential: \"store://local/notify/slack#url\" }
  targets:
    payments-team: [\"slack:#payments\"]
envs:
  dev:
    API_KEY:
      from: { store: \"store://local/app/api#key\" }
      rotation: { strategy: random, config: { length: 16 } }
";

async fn outbox(cluster: &TestCluster) -> Vec<wire::Notification> {
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .list_notifications(wire::ListNotificationsRequest { failed: false, limit: 1000 })
        .await
        .unwrap()
        .into_inner()
        .notifications
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_become_deliveries_once_across_a_leader_change() {
    let mut cluster = TestCluster::start(3).await;
    let project = AgentProject::new(CONFIG);
    project.apply(&cluster).await;
    let agent = enrolled_agent(&project, &cluster, "a1", "default").await;
    let done = rotate(&cluster, "dev", "API_KEY").await;
    assert!(done.is_finished());

    // run.requested and run.completed, each to the webhook (pending, for an agent of `default`)
    // and to the log (written and delivered by the leader).
    let entries = wait_for("the deliveries of the run", Duration::from_secs(10), || async {
        let entries = outbox(&cluster).await;
        (entries.iter().filter(|e| e.action == "run.completed").count() == 2).then_some(entries)
    })
    .await;
    let of = |action: &str| -> Vec<&wire::Notification> {
        entries.iter().filter(|e| e.action == action).collect()
    };
    for action in ["run.requested", "run.completed"] {
        let mut channels: Vec<(&str, &str)> =
            of(action).iter().map(|e| (e.channel.as_str(), e.status.as_str())).collect();
        channels.sort();
        assert_eq!(channels, [("hook", "pending"), ("log", "delivered")], "{action}");
        let e = of(action)[0];
        assert_eq!(e.subject, "dev/API_KEY");
        assert!(e.id.starts_with(&format!("{}.", e.event_id)), "{e:?}");
    }
    let hook = of("run.completed").into_iter().find(|e| e.channel == "hook").unwrap().clone();
    assert_eq!(hook.segment, "default");
    // The event id is the audit event's sequence number.
    let leader = cluster.leader().await;
    let audit = cluster.control(leader).audit_history(0, usize::MAX).unwrap().events;
    let seq: u64 = hook.event_id.trim_start_matches("evt-").parse().unwrap();
    let event = audit.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!((event.action.as_str(), event.subject.as_str()), ("run.completed", "dev/API_KEY"));

    // The leader goes; the next one carries on from the replicated cursor.
    drop(agent);
    let before = outbox(&cluster).await.len();
    cluster.kill(leader).await;
    let survivors = cluster.running();
    let new_leader = cluster.leader_among(&survivors).await;
    let _agent = enrolled_agent(&project, &cluster, "a2", "default").await;
    rotate(&cluster, "dev", "API_KEY").await;
    let after = wait_for("the second run's deliveries", Duration::from_secs(15), || async {
        let entries = outbox(&cluster).await;
        (entries.iter().filter(|e| e.action == "run.completed").count() == 4).then_some(entries)
    })
    .await;
    assert!(after.len() >= before + 4, "{} then {}", before, after.len());
    // Every (event, channel) once.
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &after {
        *seen.entry((e.event_id.clone(), e.channel.clone())).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let cursor = cluster.control(new_leader).read_local(|s| s.notify_cursor).await;
    assert!(cursor >= seq, "the cursor moved on: {cursor}");
    cluster.shutdown().await;
}
