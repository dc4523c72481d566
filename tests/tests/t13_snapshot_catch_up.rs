//! A node that was down while the log moved past what is kept catches up from a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_state::Command;
use dsops_tests::cluster::fast_options;
use dsops_tests::{TestCluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_by_snapshot() {
    let mut options = fast_options();
    options.snapshot_every = 20;
    options.keep_logs = 2;
    let mut cluster = TestCluster::start_with(3, options).await;
    let leader = cluster.leader().await;
    let lagging = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(lagging).await;
    let before = cluster.data_dir(lagging).clone();

    for i in 0..120 {
        let command = Command::AppendAudit {
            action: "test.write".into(),
            subject: format!("s{i:03}"),
            detail: String::new(),
        };
        cluster.write(&format!("snapshot-write-{i:06}"), command).await;
    }
    // The leader has snapshotted and purged the log the lagging node would need.
    let purged = wait_for("the leader to purge its log", Duration::from_secs(10), || async {
        let metrics = cluster.control(leader).metrics();
        metrics.purged.filter(|p| p.index > 40).map(|p| p.index)
    })
    .await;

    cluster.restart(lagging).await;
    let _ = before;
    wait_for(
        "the lagging node to install a snapshot and catch up",
        Duration::from_secs(15),
        || async {
            let metrics = cluster.control(lagging).metrics();
            let snapshot = metrics.snapshot?.index;
            let caught_up = cluster
                .control(lagging)
                .read_local(|s| s.audit.events().iter().any(|e| e.subject == "s119"))
                .await;
            (snapshot >= purged && caught_up).then_some(())
        },
    )
    .await;
    let count = cluster
        .control(lagging)
        .read_local(|s| s.audit.events().iter().filter(|e| e.action == "test.write").count())
        .await;
    assert_eq!(count, 120);
    cluster.shutdown().await;
}
