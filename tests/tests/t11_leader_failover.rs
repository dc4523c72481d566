//! The leader is killed: a new leader is elected and every acknowledged write is still there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_state::Command;
use dsops_tests::{TestCluster, wait_for};

fn audit(i: usize) -> Command {
    Command::AppendAudit {
        action: "test.write".into(),
        subject: format!("w{i:03}"),
        detail: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_leaders_death() {
    let mut cluster = TestCluster::start(3).await;
    for i in 0..30 {
        cluster.write(&format!("failover-write-{i:06}"), audit(i)).await;
    }
    let old = cluster.leader().await;
    cluster.kill(old).await;
    let rest: Vec<u64> = cluster.running();
    let new = cluster.leader_among(&rest).await;
    assert_ne!(new, old);
    let subjects = cluster
        .control(new)
        .read_current(|s| s.audit.events().iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    for i in 0..30 {
        assert!(
            subjects.contains(&format!("w{i:03}")),
            "acknowledged write w{i:03} lost after failover"
        );
    }
    // The survivors keep committing.
    cluster.write("failover-after-000001", audit(999)).await;
    // And the old leader catches up when it returns.
    cluster.restart(old).await;
    wait_for("the old leader to catch up", Duration::from_secs(10), || async {
        let applied = cluster
            .control(old)
            .read_local(|s| s.audit.events().iter().any(|e| e.subject == "w999"))
            .await;
        applied.then_some(())
    })
    .await;
    cluster.shutdown().await;
}
