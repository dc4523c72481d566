//! Every node stops; all restart from their data directories with nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_state::Command;
use dsops_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_restarts_from_disk() {
    let mut cluster = TestCluster::start(3).await;
    for i in 0..25 {
        let command = Command::AppendAudit {
            action: "test.write".into(),
            subject: format!("r{i:03}"),
            detail: String::new(),
        };
        cluster.write(&format!("restart-write-{i:06}"), command).await;
    }
    let version_before = cluster
        .control(cluster.leader().await)
        .read_current(|s| {
            s.audit
                .events()
                .iter()
                .map(|e| (e.seq, e.action.clone(), e.subject.clone()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    for id in cluster.ids() {
        cluster.kill(id).await;
    }
    for id in cluster.ids() {
        cluster.restart(id).await;
    }
    let leader = cluster.leader().await;
    let events = cluster.control(leader).read_current(|s| s.audit.events().to_vec()).await.unwrap();
    let after: Vec<_> =
        events.iter().map(|e| (e.seq, e.action.clone(), e.subject.clone())).collect();
    assert_eq!(after, version_before, "audit events before and after the restart differ");
    for i in 0..25 {
        assert!(
            events.iter().any(|e| e.subject == format!("r{i:03}")),
            "r{i:03} lost in the restart"
        );
    }
    assert!(
        dsops_state::AuditLog::verify(&events).is_ok(),
        "the audit chain broke across the restart"
    );
    cluster
        .write(
            "restart-after-00001",
            Command::AppendAudit {
                action: "test.write".into(),
                subject: "after".into(),
                detail: String::new(),
            },
        )
        .await;
    cluster.shutdown().await;
}
