//! An enrolled agent turned hostile cannot stall the cluster. It sends a receipt with a 3.9 MiB
//! detail (refused at the message size limit, the session closed with a reason), then 100,000
//! bad receipts as fast as its session lets it. Meanwhile `dsops apply` commits within 15 s and
//! an honest agent of the same segment keeps rotating; the refusals reach the audit log as a
//! few summaries, not one raft entry each.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::RunView;
use std::time::{Duration, Instant, SystemTime};

use dsops_cli::embedded::random_id;
use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config};
use dsops_proto::domain::{
    AgentId, Generation, ReceiptBody, RunId, SignedReceipt, Step, StepOutcome,
};
use dsops_proto::wire::admin as admin_wire;
use dsops_proto::wire::agent as wire;
use dsops_proto::wire::agent::agent_service_client::AgentServiceClient;
use dsops_tests::TestCluster;
use dsops_tests::agents::{agent_token, enroll, enrolled_agent, rotate, token_project};

const BAD_RECEIPTS: u64 = 100_000;

fn hello() -> wire::AgentMessage {
    wire::AgentMessage {
        kind: Some(wire::agent_message::Kind::Hello(wire::Hello {
            version: "0.1.0".into(),
            capabilities: Some(wire::Capabilities::default()),
            jobs_in_flight: vec![],
        })),
    }
}

fn receipt(
    agent: &str,
    run: u64,
    detail: String,
    key: &ed25519_dalek::SigningKey,
) -> wire::AgentMessage {
    let body = ReceiptBody {
        run_id: RunId::parse(&format!("run-bogus-{run}"), "run_id").unwrap(),
        generation: Generation::parse(1, "generation").unwrap(),
        step: Step::Apply,
        target: "svc://tokens?kind=secret".into(),
        value_fingerprint: None,
        performed_at: SystemTime::now(),
        outcome: StepOutcome::Succeeded,
        detail,
        agent_id: AgentId::parse(agent, "agent_id").unwrap(),
        attempt: 1,
        retry_after: None,
        renew_at: None,
    };
    let signed = SignedReceipt::sign(body, key);
    wire::AgentMessage { kind: Some(wire::agent_message::Kind::Receipt((&signed).into())) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_agent_cannot_stall_the_cluster() {
    let (project, _dir) = token_project(3);
    let cluster = TestCluster::start(3).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let address = cluster.address(leader).to_owned();

    // The honest agent.
    let _honest = enrolled_agent(&project, &cluster, "a", "default").await;
    // The hostile one, enrolled like any other, driving its session by hand.
    let token = agent_token(&cluster, "default", 600).await;
    let rogue = enroll(&project.data_dir("rogue"), &address, &token).await.unwrap();
    let rogue_key = ed25519_dalek::SigningKey::from_bytes(
        &<[u8; 32]>::try_from(dsops_proto::hex_decode(&rogue.signing_seed).unwrap()).unwrap(),
    );
    let identity =
        CertifiedKey { cert_pem: rogue.cert_pem.clone(), key_pem: rogue.key_pem.clone() };
    let tls = client_config(&rogue.server_ca_pem, Some(&identity)).unwrap();
    let session = |tls: std::sync::Arc<rustls::ClientConfig>| {
        let address = address.clone();
        async move {
            let channel = dsops_identity::channel(&address, API_SERVER_NAME, tls).unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            tx.send(hello()).await.unwrap();
            let mut inbound = AgentServiceClient::new(channel)
                .max_encoding_message_size(64 << 20)
                .session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let welcome = inbound.message().await.unwrap().unwrap();
            assert!(matches!(welcome.kind, Some(wire::control_message::Kind::Welcome(_))));
            (tx, inbound)
        }
    };
    let before = cluster.control(leader).metrics().last_log_index.unwrap_or(0);

    // 1. A receipt with a 3.9 MiB detail: refused at the size limit, with a reason.
    let (tx, mut inbound) = session(tls.clone()).await;
    tx.send(receipt(&rogue.agent_id, 0, "x".repeat(3_900_000), &rogue_key)).await.unwrap();
    let ended = loop {
        match inbound.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the session closed without a reason"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::InvalidArgument, "{ended:?}");
    assert!(ended.message().contains("byte limit"), "{ended:?}");

    // 2. 100,000 bad receipts on a new session, while the cluster works.
    let (tx, mut inbound) = session(tls.clone()).await;
    let agent_id = rogue.agent_id.clone();
    let flood = tokio::spawn(async move {
        let started = Instant::now();
        for n in 0..BAD_RECEIPTS {
            let mut message = receipt(&agent_id, n, "bad".into(), &rogue_key);
            if let Some(wire::agent_message::Kind::Receipt(r)) = &mut message.kind {
                r.signature = vec![7; 64];
            }
            if tx.send(message).await.is_err() {
                break;
            }
        }
        (tx, started)
    });
    let refused = tokio::spawn(async move {
        let mut refused = 0u64;
        while refused < BAD_RECEIPTS {
            match inbound.message().await {
                Ok(Some(wire::ControlMessage {
                    kind: Some(wire::control_message::Kind::ReceiptAck(ack)),
                })) => {
                    assert!(!ack.accepted, "{ack:?}");
                    refused += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        refused
    });

    // The honest agent rotates, and an apply commits within 15 s, while the flood goes on.
    let applied = Instant::now();
    let mut yaml = std::fs::read_to_string(&project.project.config).unwrap();
    yaml.push_str("    EXTRA:\n      from: { store: \"store://shared/app/extra#value\" }\n");
    cluster
        .admin_client(leader)
        .apply_config(admin_wire::ApplyConfigRequest {
            request_id: random_id(),
            config_yaml: yaml,
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await
        .unwrap();
    let apply_took = applied.elapsed();
    assert!(apply_took < Duration::from_secs(15), "apply took {apply_took:?}");
    for n in 0..3 {
        let run = rotate(&cluster, "prod", &format!("API_TOKEN_{n}")).await;
        assert_eq!(run.state_name(), "Completed", "{run:?}");
    }
    let (_tx, started) = flood.await.unwrap();
    let refused = refused.await.unwrap();
    let flood_took = started.elapsed();
    assert_eq!(refused, BAD_RECEIPTS, "every bad receipt was answered (refused)");

    // The replicated log grew by the work done and a few summaries, not by the refusals.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let control = cluster.control(cluster.leader().await).clone();
    let after = control.metrics().last_log_index.unwrap_or(0);
    let summaries = control
        .read_local(|s| {
            s.audit
                .events()
                .iter()
                .filter(|e| e.action == "receipt.refused" || e.action == "agent.message_refused")
                .map(|e| e.detail.clone())
                .collect::<Vec<_>>()
        })
        .await;
    let counted: u64 =
        summaries.iter().filter_map(|d| d.split_whitespace().next()?.parse::<u64>().ok()).sum();
    eprintln!(
        "{refused} bad receipts refused in {flood_took:?}; apply committed in {apply_took:?}; raft log grew by {} entries; {} summary events counting {counted} refusals",
        after - before,
        summaries.len()
    );
    assert!(after - before < 500, "the log grew by {} entries", after - before);
    assert!(summaries.len() < 100, "{} summaries", summaries.len());
    assert!(counted >= BAD_RECEIPTS, "the summaries count every refusal: {counted}");
    cluster.shutdown().await;
}
