//! Notifications on a 3-node cluster with a remote agent: the leader's notifier turns audit
//! events into deliveries for the targets the configuration names (policy, defaults,
//! installation names, `log:`), one per event and channel with a stable id, moving its
//! replicated cursor in the same entry; an agent of the channel's segment delivers each to a
//! real HTTP receiver started here, signed the Standard Webhooks way with the secret from the
//! agent's own store, and its signed result marks it delivered — or dead, when the receiver
//! refuses it. After the leader is killed the next one carries on: every delivery arrives (at
//! least once; receivers deduplicate by `webhook-id`) and no event is queued twice.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use dsops_proto::wire::admin as wire;
use dsops_tests::agents::{AgentProject, enrolled_agent, rotate};
use dsops_tests::receivers::receiver;
use dsops_tests::{RunView, TestCluster, wait_for};

/// The webhook signing secret, as the agent's store holds it.
const SECRET: &[u8] = b"a-32-byte-standard-webhook-key!!";

fn config(hook_port: u16, bad_port: u16) -> String {
    format!(
        "version: 1
secretStores:
  local: {{ type: file }}
rotation:
  defaults:
    notification:
      on_success: [\"webhook:hook\", \"webhook:bad\", \"log:audit\"]
      on_failure: [payments-team]
notifications:
  channels:
    hook: {{ type: webhook, url: \"http://127.0.0.1:{hook_port}/dsops\", credential: \"store://local/notify/hook#secret\" }}
    bad: {{ type: webhook, url: \"http://127.0.0.1:{bad_port}/dsops\", credential: \"store://local/notify/hook#secret\" }}
    chat: {{ type: slack, channel: \"#payments\", segment: seg-b, credential: \"store://local/notify/slack#url\" }}
  targets:
    payments-team: [\"slack:#payments\"]
envs:
  dev:
    API_KEY:
      from: {{ store: \"store://local/app/api#key\" }}
      rotation: {{ strategy: random, config: {{ length: 16 }} }}
"
    )
}

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
async fn events_are_queued_once_and_delivered_by_an_agent_across_a_leader_change() {
    let (hook_port, hooked) = receiver(204).await;
    let (bad_port, _) = receiver(400).await;
    let mut cluster = TestCluster::start(3).await;
    let project = AgentProject::new(&config(hook_port, bad_port));
    project.apply(&cluster).await;
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SECRET));
    for agent in ["a1", "a2"] {
        project.put(agent, "local", "notify/hook", "secret", &secret);
    }
    let agent = enrolled_agent(&project, &cluster, "a1", "default").await;
    let done = rotate(&cluster, "dev", "API_KEY").await;
    assert!(done.is_finished());

    // run.requested and run.completed, each to both webhooks (delivered by the agent, or dead:
    // the second receiver refuses) and to the log (written by the leader).
    let entries = wait_for("the deliveries of the run", Duration::from_secs(30), || async {
        let entries = outbox(&cluster).await;
        let settled = entries.iter().filter(|e| e.status != "pending").count();
        (entries.len() == 6 && settled == 6).then_some(entries)
    })
    .await;
    for action in ["run.requested", "run.completed"] {
        let mut channels: Vec<(&str, &str)> = entries
            .iter()
            .filter(|e| e.action == action)
            .map(|e| (e.channel.as_str(), e.status.as_str()))
            .collect();
        channels.sort();
        assert_eq!(
            channels,
            [("bad", "dead"), ("hook", "delivered"), ("log", "delivered")],
            "{action}"
        );
    }
    let dead = entries.iter().find(|e| e.channel == "bad").unwrap();
    assert!(dead.last_error.contains("400"), "{dead:?}");
    assert_eq!(dead.attempts, 1, "a refusal is final");
    // The receiver got each hook delivery, signed with the secret from the agent's store.
    let hook_ids: BTreeSet<String> =
        entries.iter().filter(|e| e.channel == "hook").map(|e| e.id.clone()).collect();
    let got = hooked.lock().unwrap().clone();
    let got_ids: BTreeSet<String> = got.iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(got_ids, hook_ids);
    for r in &got {
        assert!(r.signed_with(SECRET), "signed with the secret from the agent's store");
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["data"]["subject"], "dev/API_KEY");
        assert!(!String::from_utf8_lossy(&r.body).contains("whsec_"), "no secret in a message");
    }
    // The event id is the audit event's sequence number; deliveries are audited by the agent.
    let leader = cluster.leader().await;
    let audit = cluster.control(leader).audit_history(0, usize::MAX).unwrap().events;
    let completed = entries.iter().find(|e| e.action == "run.completed").unwrap();
    let seq: u64 = completed.event_id.trim_start_matches("evt-").parse().unwrap();
    let event = audit.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!((event.action.as_str(), event.subject.as_str()), ("run.completed", "dev/API_KEY"));
    assert!(
        audit.iter().any(|e| e.action == "notification.delivered" && e.actor.starts_with("agt-"))
    );
    assert!(audit.iter().any(|e| e.action == "notification.dead"));

    // The leader goes; the next one carries on from the replicated cursor, and its agent
    // delivers the second run's events.
    drop(agent);
    cluster.kill(leader).await;
    let survivors = cluster.running();
    let new_leader = cluster.leader_among(&survivors).await;
    let _agent = enrolled_agent(&project, &cluster, "a2", "default").await;
    rotate(&cluster, "dev", "API_KEY").await;
    let after = wait_for("the second run's deliveries", Duration::from_secs(30), || async {
        let entries = outbox(&cluster).await;
        let done = entries.iter().filter(|e| e.channel == "hook" && e.status == "delivered");
        (done.count() == 4).then_some(entries)
    })
    .await;
    // Every (event, channel) queued once, every hook delivery received (at least once).
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &after {
        *seen.entry((e.event_id.clone(), e.channel.clone())).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let hook_ids: BTreeSet<String> =
        after.iter().filter(|e| e.channel == "hook").map(|e| e.id.clone()).collect();
    let got_ids: BTreeSet<String> =
        hooked.lock().unwrap().iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(got_ids, hook_ids);
    let cursor = cluster.control(new_leader).read_local(|s| s.notify_cursor).await;
    assert!(cursor > seq, "the cursor moved on: {cursor}");
    let failed = cluster
        .admin_client(new_leader)
        .list_notifications(wire::ListNotificationsRequest { failed: true, limit: 10 })
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(failed.iter().all(|e| e.status == "dead" && e.channel == "bad"), "{failed:?}");
    cluster.shutdown().await;
}
