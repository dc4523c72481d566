//! A leader cut off from the majority cannot commit, and steps down when the partition heals;
//! the majority elects a new leader and keeps committing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_state::Command;
use dsops_tests::{TestCluster, wait_for};

fn audit(subject: &str) -> Command {
    Command::AppendAudit {
        action: "test.write".into(),
        subject: subject.into(),
        detail: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minority_cannot_commit_and_its_stale_leader_steps_down() {
    let cluster = TestCluster::start(3).await;
    let old = cluster.leader().await;
    let majority: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != old).collect();
    cluster.partition(&[old], &majority);

    // The isolated leader's write never commits.
    let isolated = cluster.control(old).clone();
    let stuck = tokio::spawn(async move {
        isolated.write("test", "minority-write-0001", audit("minority")).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !stuck.is_finished() || stuck.await.unwrap().is_err(),
        "a write on the minority side committed"
    );

    // The majority elects a new leader and commits.
    let new = cluster.leader_among(&majority).await;
    assert_ne!(new, old);
    cluster.control(new).write("test", "majority-write-0001", audit("majority")).await.unwrap();

    // Healed: the old leader follows the new one and drops its uncommitted entry.
    cluster.heal();
    wait_for("the stale leader to step down", Duration::from_secs(10), || async {
        let metrics = cluster.control(old).metrics();
        (metrics.current_leader == Some(new) && metrics.state == openraft::ServerState::Follower)
            .then_some(())
    })
    .await;
    cluster.control(new).write("test", "after-heal-000001", audit("after-heal")).await.unwrap();
    for id in cluster.ids() {
        wait_for("every node to apply the healed log", Duration::from_secs(10), || async {
            let subjects = cluster
                .control(id)
                .read_local(|s| {
                    s.audit.events().iter().map(|e| e.subject.clone()).collect::<Vec<_>>()
                })
                .await;
            (subjects.contains(&"after-heal".to_owned())).then_some(subjects)
        })
        .await;
        let subjects = cluster
            .control(id)
            .read_local(|s| s.audit.events().iter().map(|e| e.subject.clone()).collect::<Vec<_>>())
            .await;
        assert!(subjects.contains(&"majority".to_owned()), "node {id} lost the majority's write");
        assert!(
            !subjects.contains(&"minority".to_owned()),
            "node {id} applied the minority's uncommitted write"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_one_way_links_still_commit_through_the_majority() {
    use dsops_control_plane::raft::LinkAction;
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|id| *id != leader).collect();
    // One follower is slow to reach, the other cannot be reached from the leader at all (but can
    // still reach the leader): the slow one keeps the majority.
    cluster.set_link(leader, followers[0], LinkAction::Delay(Duration::from_millis(30)));
    cluster.set_link(leader, followers[1], LinkAction::Drop);
    let started = std::time::Instant::now();
    cluster.control(leader).write("test", "slow-link-write-0001", audit("slow")).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "the write did not wait for the delayed link"
    );
    cluster.heal();
    wait_for("the cut-off follower to catch up", Duration::from_secs(10), || async {
        cluster
            .control(followers[1])
            .read_local(|s| s.audit.events().iter().any(|e| e.subject == "slow"))
            .await
            .then_some(())
    })
    .await;
    cluster.shutdown().await;
}
