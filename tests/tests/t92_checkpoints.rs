//! Signed checkpoints on a 3-node cluster: the leader registers the evidence key (its
//! certificate issued by the cluster's peer CA, for time stamping only) and signs the audit
//! chain's head at an interval, also when nothing happened; each checkpoint is an event of the
//! chain and verifies with the key its certificate names, checked here with nothing but the
//! CA certificates. A new leader signs with the same key: no second key is registered.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_control_plane::node::NodeOptions;
use dsops_state::{AuditEvent, AuditLog, CHECKPOINT_ACTION, EvidenceKey, SignedCheckpoint};
use dsops_tests::cluster::fast_options;
use dsops_tests::{TestCluster, wait_for};
use x509_parser::prelude::{FromDer, X509Certificate};

fn der(pem: &str) -> Vec<u8> {
    dsops_identity::pem_to_der(pem).unwrap()
}

async fn checkpoints(cluster: &TestCluster) -> (Vec<AuditEvent>, Vec<EvidenceKey>) {
    let leader = cluster.leader().await;
    let control = cluster.control(leader);
    let events = control.audit_history(0, usize::MAX).unwrap().events;
    let keys = control.read_local(|s| s.evidence_keys.values().cloned().collect()).await;
    (events, keys)
}

/// Every checkpoint among `events` verifies with its registered key and names the hash of the
/// event it covers; returns how many there are.
fn verify(events: &[AuditEvent], keys: &[EvidenceKey]) -> usize {
    AuditLog::verify(events).expect("the audit chain verifies");
    let mut count = 0;
    for event in events.iter().filter(|e| e.action == CHECKPOINT_ACTION) {
        let checkpoint = SignedCheckpoint::from_detail(&event.detail).expect("a checkpoint");
        let key = keys.iter().find(|k| k.generation == checkpoint.generation).expect("its key");
        checkpoint.verify(&key.public_key_hex).expect("the signature verifies");
        let covered = events.iter().find(|e| e.seq == checkpoint.seq).expect("the covered event");
        assert_eq!(covered.hash, checkpoint.hash);
        assert_eq!(covered.at_ms, checkpoint.at_ms);
        assert!(checkpoint.seq < event.seq);
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_signs_the_chain_head_with_a_certified_key_across_a_leader_change() {
    let options = NodeOptions { checkpoint_every: Duration::from_millis(500), ..fast_options() };
    let mut cluster = TestCluster::start_with(3, options).await;
    let (events, keys) = wait_for("two checkpoints", Duration::from_secs(30), || async {
        let (events, keys) = checkpoints(&cluster).await;
        let n = events.iter().filter(|e| e.action == CHECKPOINT_ACTION).count();
        (n >= 2).then_some((events, keys))
    })
    .await;
    assert!(verify(&events, &keys) >= 2);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(key.generation, 1);

    // The key's certificate: issued by the peer CA (itself issued by the root), for time
    // stamping only, naming the registered public key.
    let pki = cluster.control(cluster.leader().await).pki();
    let cert_der = der(&key.certificate_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();
    let peer_der = der(&pki.peer.cert_pem);
    let (_, peer) = X509Certificate::from_der(&peer_der).unwrap();
    let root_der = der(&pki.root_cert_pem);
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    cert.verify_signature(Some(peer.public_key())).expect("issued by the peer CA");
    peer.verify_signature(Some(root.public_key())).expect("the peer CA under the root");
    assert_eq!(dsops_proto::hex(&cert.public_key().subject_public_key.data), key.public_key_hex);
    let eku = cert.extended_key_usage().unwrap().expect("an extended key usage").value;
    assert!(eku.time_stamping && !eku.client_auth && !eku.server_auth, "{eku:?}");
    let other_der = der(&pki.agent.cert_pem);
    let (_, other) = X509Certificate::from_der(&other_der).unwrap();
    assert!(cert.verify_signature(Some(other.public_key())).is_err(), "not the agent CA's");

    // Nothing else happens, and checkpoints keep coming (heartbeats), each covering the one
    // before it.
    let before = events.iter().filter(|e| e.action == CHECKPOINT_ACTION).count();
    let (events, _) = wait_for("heartbeat checkpoints", Duration::from_secs(30), || async {
        let (events, keys) = checkpoints(&cluster).await;
        (verify(&events, &keys) >= before + 2).then_some((events, keys))
    })
    .await;
    let last = events.iter().rev().find(|e| e.action == CHECKPOINT_ACTION).unwrap();
    let covered = SignedCheckpoint::from_detail(&last.detail).unwrap().seq;
    let previous = events.iter().find(|e| e.seq == covered).unwrap();
    assert_eq!(previous.action, CHECKPOINT_ACTION, "a heartbeat covers the checkpoint before it");

    // A new leader signs with the same derived key.
    let old = cluster.leader().await;
    cluster.kill(old).await;
    let seen = events.len();
    let (events, keys) =
        wait_for("a checkpoint by the next leader", Duration::from_secs(30), || {
            let cluster = &cluster;
            async move {
                let (events, keys) = checkpoints(cluster).await;
                let new = events[seen..]
                    .iter()
                    .any(|e| e.action == CHECKPOINT_ACTION && e.actor != format!("node-{old}"));
                new.then_some((events, keys))
            }
        })
        .await;
    assert_eq!(keys.len(), 1, "no second key: {keys:?}");
    verify(&events, &keys);
    cluster.shutdown().await;
}
