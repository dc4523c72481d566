//! The replicated state stays bounded. 20,000 certificate-less TLS handshakes, each from its own
//! 127.0.x.y address, are refused and summarised: the audit log grows by a handful of events
//! and the process's resident memory stays where it was (both printed). And a node keeps its
//! audit history for its retention only: past it the oldest events go, a checkpoint of the
//! chain stays, and what remains verifies — also after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsops_control_plane::raft::AuditRetention;
use dsops_identity::RAFT_SERVER_NAME;
use dsops_state::{CHECKPOINT_ACTION, Command, SignedCheckpoint};
use dsops_tests::cluster::fast_options;
use dsops_tests::usage::rss_kib;
use dsops_tests::{TestCluster, wait_for};
use rustls::pki_types::ServerName;

const HANDSHAKES: u32 = 20_000;
const AT_ONCE: usize = 32;

/// One handshake without a client certificate, from `source`, for the raft name (which demands
/// one): returns whether the server refused it.
async fn refused_handshake(
    server: SocketAddr,
    source: Ipv4Addr,
    tls: Arc<rustls::ClientConfig>,
) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let Ok(stream) = socket.connect(server).await else { return false };
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = ServerName::try_from(RAFT_SERVER_NAME.to_owned()).unwrap();
    match connector.connect(name, stream).await {
        // TLS 1.3: the refusal arrives with the first read after the client's Finished.
        Ok(mut stream) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\n").await;
            let mut buf = [0u8; 64];
            matches!(stream.read(&mut buf).await, Err(_) | Ok(0))
        }
        Err(_) => true,
    }
}

async fn audit_len(cluster: &TestCluster) -> usize {
    let leader = cluster.leader().await;
    cluster.control(leader).audit_history(0, usize::MAX).unwrap().events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_refused_handshakes_leave_the_state_bounded() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let server: SocketAddr = cluster.address(leader).parse().unwrap();
    let tls = dsops_identity::client_config(&cluster.admin().ca_pem, None).unwrap();

    let run = |from: u32, to: u32| {
        let tls = tls.clone();
        async move {
            let mut refused = 0u32;
            let sources: Vec<Ipv4Addr> = (from..to)
                .map(|i| Ipv4Addr::new(127, 0, (1 + i / 250) as u8, (1 + i % 250) as u8))
                .collect();
            for chunk in sources.chunks(AT_ONCE) {
                let results = futures::future::join_all(
                    chunk.iter().map(|source| refused_handshake(server, *source, tls.clone())),
                )
                .await;
                refused += results.into_iter().filter(|r| *r).count() as u32;
            }
            refused
        }
    };
    // Warm up (allocator pools, connection machinery), then measure.
    run(0, 500).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (events_before, rss_before) = (audit_len(&cluster).await, rss_kib("self").unwrap());
    let started = Instant::now();
    let refused = run(500, 500 + HANDSHAKES).await;
    let took = started.elapsed();
    // Let the last summary reach the log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (events_after, rss_after) = (audit_len(&cluster).await, rss_kib("self").unwrap());
    eprintln!(
        "{refused} of {HANDSHAKES} handshakes refused in {took:?}; audit events {events_before} -> {events_after}; resident memory {rss_before} KiB -> {rss_after} KiB"
    );
    assert_eq!(refused, HANDSHAKES);
    assert!(
        events_after - events_before <= 2 * (took.as_secs() as usize + 4),
        "audit grew by {}",
        events_after - events_before
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "resident memory grew from {rss_before} to {rss_after} KiB"
    );
    let summaries = cluster
        .control(leader)
        .read_local(|s| {
            s.audit
                .recent()
                .filter(|e| e.action == "tls.refused")
                .map(|e| e.detail.clone())
                .collect::<Vec<_>>()
        })
        .await;
    let counted: u64 =
        summaries.iter().filter_map(|d| d.split_whitespace().next()?.parse::<u64>().ok()).sum();
    assert!(counted >= u64::from(HANDSHAKES), "summaries count {counted}: {summaries:?}");
    assert!(summaries.iter().any(|d| d.contains("and others")), "{summaries:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_history_is_kept_for_its_retention_and_verifies_across_the_cut() {
    let mut options = fast_options();
    options.audit_retention =
        AuditRetention { max_age: Duration::from_secs(3600), max_events: 200 };
    let mut cluster = TestCluster::start_with(1, options).await;
    // Two phases of 300 events, each followed by a signed checkpoint.
    for phase in 0..2 {
        for i in phase * 300..(phase + 1) * 300 {
            cluster
                .write(
                    &format!("audit-{i}"),
                    Command::AppendAudit {
                        action: "test.event".into(),
                        subject: format!("e{i}"),
                        detail: String::new(),
                    },
                )
                .await;
        }
        dsops_control_plane::node::evidence::checkpoint(cluster.control(1), Duration::ZERO)
            .await
            .unwrap();
    }
    let check = |cluster: &TestCluster| {
        let control = cluster.control(1).clone();
        async move {
            let history = control.audit_history(0, usize::MAX).unwrap();
            // The cut falls where the first phase's checkpoint signed (about 300 events in): the
            // history keeps more than the 200 asked for, up to one checkpoint interval.
            let kept = history.events.len();
            assert!((200..=320).contains(&kept), "{kept} kept");
            assert!(history.start.seq > 0, "a checkpoint replaced the genesis");
            assert!(history.verify().is_ok(), "the kept chain verifies from its checkpoint");
            let attested = history
                .events
                .iter()
                .filter(|e| e.action == CHECKPOINT_ACTION)
                .filter_map(|e| SignedCheckpoint::from_detail(&e.detail))
                .any(|c| c.seq == history.start.seq && c.hash == history.start.hash);
            assert!(
                attested,
                "a kept signed checkpoint vouches for the cut at {}",
                history.start.seq
            );
            let last = history.events.iter().rev().find(|e| e.action == "test.event").unwrap();
            assert_eq!(last.subject, "e599");
            history
        }
    };
    let before = check(&cluster).await;
    cluster.kill(1).await;
    cluster.restart(1).await;
    wait_for("the node leads again", Duration::from_secs(10), || async {
        cluster.control(1).is_leader().then_some(())
    })
    .await;
    let after = check(&cluster).await;
    assert_eq!(after.events.last(), before.events.last());
    cluster.shutdown().await;
}
