//! What an agent session refuses, and records: a certificate from another cluster's agent CA,
//! an expired agent certificate, and a receipt whose signature does not verify or that is for a
//! run of another segment.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::{Duration, SystemTime};

use dsops_agent::identity::AgentIdentity;
use dsops_control_plane::pki::ClusterPki;
use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config, new_csr};
use dsops_proto::domain::{
    AgentId, Generation, ReceiptBody, RunId, SignedReceipt, Step, StepOutcome,
};
use dsops_proto::wire::agent as wire;
use dsops_proto::wire::agent::agent_service_client::AgentServiceClient;
use dsops_state::Command;
use dsops_tests::agents::wait_audit;
use dsops_tests::{TestCluster, wait_for};

/// Opens a session with `identity` at `address` and returns how it ended.
async fn session_with(
    cluster: &TestCluster,
    address: &str,
    identity: &CertifiedKey,
) -> Result<(), tonic::Status> {
    let leader = cluster.leader().await;
    let ca = cluster.control(leader).pki().peer.cert_pem.clone();
    let tls = client_config(&ca, Some(identity)).unwrap();
    let channel = dsops_identity::channel(address, API_SERVER_NAME, tls).unwrap();
    let hello = wire::AgentMessage {
        kind: Some(wire::agent_message::Kind::Hello(wire::Hello {
            version: "0.1.0".into(),
            capabilities: Some(wire::Capabilities::default()),
            jobs_in_flight: vec![],
        })),
    };
    let mut stream = AgentServiceClient::new(channel)
        .session(tokio_stream::iter(vec![hello]))
        .await?
        .into_inner();
    stream.message().await?;
    Ok(())
}

async fn audited(cluster: &TestCluster, action: &str, needle: &str) -> String {
    let leader = cluster.leader().await;
    wait_audit(cluster.control(leader), action, needle, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_or_expired_are_refused_and_audited() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let address = cluster.address(leader).to_owned();

    // An agent certificate from another cluster's agent CA.
    let (other, _) = ClusterPki::generate("other").unwrap();
    let (csr, key_pem) = new_csr("dsops-agent").unwrap();
    let (cert_pem, _) =
        other.sign_agent_csr(&csr, "agt-0000000000000001", Duration::from_secs(3600)).unwrap();
    let foreign = CertifiedKey { cert_pem, key_pem };
    let refused = session_with(&cluster, &address, &foreign).await;
    assert!(refused.is_err(), "a foreign certificate opened a session");
    let detail = audited(&cluster, "tls.refused", "UnknownIssuer").await;
    assert!(detail.contains("invalid peer certificate"), "{detail}");

    // An expired certificate from this cluster's own agent CA.
    let pki = cluster.control(leader).pki();
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let expired = ClusterPki::issue_with_validity(
        &pki.agent,
        "agt-0000000000000002",
        past,
        past + time::Duration::days(1),
    )
    .unwrap();
    let refused = session_with(&cluster, &address, &expired).await;
    assert!(refused.is_err(), "an expired certificate opened a session");
    let detail = audited(&cluster, "tls.refused", "expired").await;
    assert!(detail.contains("invalid peer certificate"), "{detail}");
    cluster.shutdown().await;
}

/// A run of segment `seg-a` whose stage step was dispatched to agent `agt-aaaa`; returns its
/// generation.
async fn run_dispatched_to_a(cluster: &TestCluster) -> u64 {
    // A run of segment a, dispatched to agent a.
    let spec = dsops_state::RunSpec {
        strategy: "random".into(),
        store_ref: "store://local/app/k#v".into(),
        service_ref: None,
        config_json: "{}".into(),
        segment: "seg-a".into(),
        grace_ms: 0,
        max_attempts: 5,
        step_timeout_ms: 600_000,
        config_version: 1,
        value_format: None,
        approval: None,
        promotion: None,
        rate_limit: None,
    };
    cluster
        .write(
            "request",
            Command::RequestRun {
                run_id: "run-t72".into(),
                env: "prod".into(),
                key: "K".into(),
                spec,
                restore_previous: false,
                reason: "test".into(),
                break_glass: false,
                trace_parent: None,
            },
        )
        .await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader).clone();
    let generation = wait_for("the run", Duration::from_secs(5), || {
        let control = control.clone();
        async move { control.read_local(|s| s.runs.get("run-t72").map(|r| r.generation)).await }
    })
    .await;
    cluster
        .write(
            "dispatch",
            Command::DispatchStep {
                run_id: "run-t72".into(),
                generation,
                step: dsops_state::StepKind::Stage,
                checked_step: None,
                attempt: 1,
                agent_id: "agt-aaaa".into(),
                deadline_ms: u64::MAX / 2,
            },
        )
        .await;
    generation
}

/// A session of agent `agent_id` (with a fresh certificate of this cluster's agent CA), past its
/// Welcome: what to send on, and what comes back.
async fn open_session(
    control: &dsops_control_plane::control::ControlPlane,
    address: &str,
    agent_id: &str,
) -> (tokio::sync::mpsc::Sender<wire::AgentMessage>, tonic::Streaming<wire::ControlMessage>) {
    let (csr, key_pem) = new_csr("dsops-agent").unwrap();
    let (cert_pem, _) =
        control.pki().sign_agent_csr(&csr, agent_id, Duration::from_secs(3600)).unwrap();
    let tls =
        client_config(&control.pki().peer.cert_pem, Some(&CertifiedKey { cert_pem, key_pem }))
            .unwrap();
    let channel = dsops_identity::channel(address, API_SERVER_NAME, tls).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(wire::AgentMessage {
        kind: Some(wire::agent_message::Kind::Hello(wire::Hello {
            version: "0.1.0".into(),
            capabilities: Some(wire::Capabilities::default()),
            jobs_in_flight: vec![],
        })),
    })
    .await
    .unwrap();
    let mut inbound = AgentServiceClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let welcome = inbound.message().await.unwrap().unwrap();
    assert!(matches!(welcome.kind, Some(wire::control_message::Kind::Welcome(_))), "{welcome:?}");
    (tx, inbound)
}

/// Registers agents' receipt keys.
async fn register(cluster: &TestCluster, agents: &[&AgentIdentity]) {
    for agent in agents {
        cluster
            .write(
                &format!("register-{}", agent.agent_id),
                Command::RegisterAgent {
                    agent_id: agent.agent_id.clone(),
                    segment: agent.segment.clone(),
                    public_key: agent.public_key_hex(),
                },
            )
            .await;
    }
}

fn stage_receipt(agent: &str, generation: u64) -> ReceiptBody {
    ReceiptBody {
        run_id: RunId::parse("run-t72", "run_id").unwrap(),
        generation: Generation::parse(generation, "generation").unwrap(),
        step: Step::Stage,
        target: "store://local/app/k#v".into(),
        value_fingerprint: None,
        performed_at: SystemTime::now(),
        outcome: StepOutcome::Succeeded,
        detail: String::new(),
        agent_id: AgentId::parse(agent, "agent_id").unwrap(),
        attempt: 1,
        retry_after: None,
        renew_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_cross_segment_receipts_are_refused_and_audited() {
    let cluster = TestCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    // Two agents in two segments, registered with their receipt keys.
    let a = AgentIdentity::load_or_create("agt-aaaa", "seg-a", &dir.path().join("a.key")).unwrap();
    let b = AgentIdentity::load_or_create("agt-bbbb", "seg-b", &dir.path().join("b.key")).unwrap();
    register(&cluster, &[&a, &b]).await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader).clone();
    let generation = run_dispatched_to_a(&cluster).await;
    let body = |agent: &str| stage_receipt(agent, generation);
    // Claims to be agent a, signed with b's key: the signature does not verify.
    let forged = SignedReceipt::sign(body("agt-aaaa"), &b.signing_key);
    let verdict =
        dsops_control_plane::rotation::submit_receipt(&control, &forged, "agt-aaaa").await;
    assert!(format!("{verdict:?}").contains("does not verify"), "{verdict:?}");
    audited(&cluster, "receipt.refused", "does not verify").await;
    // Agent b, correctly signed, for a run of segment a.
    let cross = SignedReceipt::sign(body("agt-bbbb"), &b.signing_key);
    let verdict = dsops_control_plane::rotation::submit_receipt(&control, &cross, "agt-bbbb").await;
    assert!(format!("{verdict:?}").contains("segment"), "{verdict:?}");
    audited(&cluster, "receipt.refused", "segment seg-b").await;
    // Nothing moved.
    let phase = control.read_local(|s| s.runs["run-t72"].phase).await;
    assert_eq!(format!("{phase:?}"), "Dispatched");
    cluster.shutdown().await;
}

/// A rogue agent of the same segment sends, on its own session, a receipt naming the honest
/// agent, its run, step and attempt, with a garbage signature. It is refused before anything is
/// written, its answer names no other agent, the audit log does not blame the honest agent, and
/// the honest agent's real receipt, sent after it, is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_is_bound_to_the_session_that_carries_it() {
    let cluster = TestCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let honest =
        AgentIdentity::load_or_create("agt-aaaa", "seg-a", &dir.path().join("a.key")).unwrap();
    let rogue =
        AgentIdentity::load_or_create("agt-eeee", "seg-a", &dir.path().join("e.key")).unwrap();
    register(&cluster, &[&honest, &rogue]).await;
    let generation = run_dispatched_to_a(&cluster).await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader).clone();
    let address = cluster.address(leader).to_owned();

    // The rogue's session, with a certificate of this cluster's agent CA naming the rogue.
    let (tx, mut inbound) = open_session(&control, &address, "agt-eeee").await;
    let mut garbage =
        SignedReceipt::sign(stage_receipt("agt-aaaa", generation), &rogue.signing_key);
    garbage.signature = [7; 64];
    tx.send(wire::AgentMessage {
        kind: Some(wire::agent_message::Kind::Receipt((&garbage).into())),
    })
    .await
    .unwrap();
    let ack = loop {
        let message = inbound.message().await.unwrap().unwrap();
        if let Some(wire::control_message::Kind::ReceiptAck(ack)) = message.kind {
            break ack;
        }
    };
    assert!(!ack.accepted, "{ack:?}");
    assert!(ack.reason.contains("another agent than the one"), "{ack:?}");
    assert!(!ack.reason.contains("agt-aaaa") && !ack.reason.contains(&generation.to_string()));

    // The honest agent's receipt, sent afterwards, is accepted.
    let real = SignedReceipt::sign(stage_receipt("agt-aaaa", generation), &honest.signing_key);
    dsops_control_plane::rotation::submit_receipt(&control, &real, "agt-aaaa").await.unwrap();
    let phase = control.read_local(|s| s.runs["run-t72"].phase).await;
    assert_eq!(format!("{phase:?}"), "Staged");
    // Nothing in the audit log blames the honest agent.
    let blamed = control
        .read_local(|s| {
            s.audit
                .events()
                .iter()
                .filter(|e| e.action == "receipt.refused")
                .map(|e| format!("{} {}", e.actor, e.detail))
                .collect::<Vec<_>>()
        })
        .await;
    assert!(blamed.iter().all(|e| !e.contains("agt-aaaa")), "{blamed:?}");
    cluster.shutdown().await;
}

/// Renewal is bounded: a certificate with more than half its life left is not renewed (no
/// signature, no raft write), so an agent cannot turn renewals into a stream of writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_renewal_is_refused_without_a_write() {
    let cluster = TestCluster::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let agent =
        AgentIdentity::load_or_create("agt-ffff", "seg-a", &dir.path().join("f.key")).unwrap();
    register(&cluster, &[&agent]).await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader).clone();
    let (tx, mut inbound) = open_session(&control, cluster.address(leader), "agt-ffff").await;
    let before = control.metrics().last_log_index;
    let (csr, _) = new_csr("dsops-agent").unwrap();
    tx.send(wire::AgentMessage {
        kind: Some(wire::agent_message::Kind::Renew(wire::RenewRequest { csr_pem: csr })),
    })
    .await
    .unwrap();
    let ended = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("closed without a reason"),
            Err(status) => break status,
        }
    };
    assert!(ended.message().contains("more than half its life left"), "{ended:?}");
    assert_eq!(control.metrics().last_log_index, before, "a refused renewal wrote to the log");
    cluster.shutdown().await;
}
