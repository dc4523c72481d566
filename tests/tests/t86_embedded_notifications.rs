//! Notifications from the embedded default: its in-process agent delivers them like a remote
//! agent (the channel's credential from its own store, the result signed and recorded), and a
//! command does not exit before its events went out. Reminders ahead of a secret's due time
//! (`beforeExpiry.advance`) are sent once per due time, to the policy's `beforeExpiry` targets,
//! when a command opens the embedded control plane.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeSet;

use base64::Engine;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_tests::RunView;
use dsops_tests::receivers::{Received, receiver};
use dsops_tests::rotation::{Project, rotate};

const SECRET: &[u8] = b"embedded-standard-webhook-key-32";

fn project(hook_port: u16, ahead_port: u16) -> Project {
    let project = Project::new("");
    let catalog = project.dir.path().join("catalog");
    std::fs::create_dir_all(catalog.join("rotation-policies")).unwrap();
    // Rotates on the 1st of January; people hear 400 days ahead, i.e. as soon as it rotated.
    std::fs::write(
        catalog.join("rotation-policies/yearly.yaml"),
        "apiVersion: dsops.io/v1
kind: RotationPolicy
metadata: { name: yearly }
spec:
  strategy: random
  schedule: \"0 0 1 1 *\"
  notifications:
    onSuccess: [\"webhook:hook\"]
    beforeExpiry: { targets: [\"webhook:ahead\"], advance: 400d }
",
    )
    .unwrap();
    let config = format!(
        "version: 1
secretStores:
  local: {{ type: file }}
rotation:
  dataDir: {}
notifications:
  channels:
    hook: {{ type: webhook, url: \"http://127.0.0.1:{hook_port}/dsops\", credential: \"store://local/notify/hook#secret\" }}
    ahead: {{ type: webhook, url: \"http://127.0.0.1:{ahead_port}/dsops\", credential: \"store://local/notify/hook#secret\" }}
envs:
  dev:
    API_KEY:
      from: {{ store: \"store://local/app/api#key\" }}
      rotation: {{ policy: yearly, config: {{ length: 24 }} }}
",
        catalog.display()
    );
    std::fs::write(&project.config, config).unwrap();
    project
}

/// The event types received, sorted (deliveries go out concurrently).
fn actions(got: &[Received]) -> Vec<String> {
    let mut actions: Vec<String> =
        got.iter().map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned()).collect();
    actions.sort();
    actions
}

async fn outbox(project: &Project) -> Vec<wire::Notification> {
    let embedded = project.open().await;
    let request = wire::ListNotificationsRequest { failed: false, limit: 100 };
    let list = embedded.admin().list_notifications(embedded.request(request)).await.unwrap();
    embedded.close().await;
    list.into_inner().notifications
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_agent_delivers_before_the_command_exits_and_reminds_ahead_of_expiry() {
    let (hook_port, hooked) = receiver(204).await;
    let (ahead_port, ahead) = receiver(204).await;
    let project = project(hook_port, ahead_port);
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(SECRET));
    project.put("notify/hook", "secret", &secret);

    // One command: a rotation. Its events are delivered by the time it closed.
    let embedded = project.open().await;
    let run = rotate(&embedded, "dev", "API_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    embedded.close().await;
    let got = hooked.lock().unwrap().clone();
    assert_eq!(actions(&got), ["run.completed", "run.requested"]);
    for r in &got {
        assert!(r.signed_with(SECRET), "signed with the credential from the agent's store");
        assert_eq!(r.json()["data"]["subject"], "dev/API_KEY");
        assert!(!String::from_utf8_lossy(&r.body).contains("whsec_"), "no credential in a message");
    }
    assert!(ahead.lock().unwrap().is_empty(), "nothing was due before the rotation");

    // The next command finds the secret within `advance` of its due time: one reminder, to the
    // policy's beforeExpiry targets only.
    let listed = outbox(&project).await;
    let reminded = ahead.lock().unwrap().clone();
    assert_eq!(actions(&reminded), ["secret.expiring"]);
    let detail = reminded[0].json()["data"]["detail"].as_str().unwrap().to_owned();
    assert!(detail.starts_with("dev/API_KEY is due for rotation at "), "{detail}");
    assert!(detail.contains("-01-01 00:00 UTC"), "{detail}");
    assert!(reminded[0].json()["data"]["actor"].as_str().unwrap().ends_with("reminders"));
    assert_eq!(actions(&hooked.lock().unwrap()), ["run.completed", "run.requested"]);
    // Recorded delivered from the agent's signed result, each event once.
    let delivered: Vec<(&str, &str)> =
        listed.iter().map(|n| (n.action.as_str(), n.status.as_str())).collect();
    assert!(delivered.contains(&("run.completed", "delivered")), "{delivered:?}");
    let ids: BTreeSet<&str> = listed.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), listed.len());

    // And it is not repeated for the same due time.
    let after = outbox(&project).await;
    assert_eq!(ahead.lock().unwrap().len(), 1);
    let expiring: Vec<&wire::Notification> =
        after.iter().filter(|n| n.action == "secret.expiring").collect();
    assert_eq!(expiring.len(), 1, "{after:?}");
    assert_eq!(expiring[0].status, "delivered");
}
