//! Remote agents over real mTLS against a 3-node cluster: enrolment with a one-time token bound
//! to a segment, sessions that declare capabilities, and rotations routed to the agent of the
//! secret's segment — PostgreSQL in one segment, MariaDB in another.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::{RunView, StepView};
use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::Login;
use dsops_state::Command;
use dsops_tests::agents::{
    AgentProject, agent_token, enroll, enrolled_agent, list_agents, rotate, wait_audit,
    wait_connected,
};
use dsops_tests::databases::{Flavor, ServerUrl};
use dsops_tests::rotation::database_service_at;
use dsops_tests::{TestCluster, wait_for};

const OLD: &str = "Initial-remote-Passw0rd-1234567";

fn service(name: &str, flavor: Flavor, segment: &str) -> (String, ServerUrl) {
    database_service_at(flavor, name, Some(segment), &format!("{segment}-store"))
}

async fn logs_in(flavor: Flavor, user: &str, password: &str) -> bool {
    flavor.login(user, &SecretValue::new(password.to_owned())).await.unwrap() == Login::Accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_agents_in_two_segments_rotate_postgres_and_mariadb() {
    let pg_user = Flavor::Postgres.create_user("t70_pg", OLD, false).await;
    let my_user = Flavor::MariaDb.create_user("t70_my", OLD, false).await;
    let (pg, pg_admin) = service("pg", Flavor::Postgres, "seg-pg");
    let (my, my_admin) = service("my", Flavor::MariaDb, "seg-my");
    let project = AgentProject::new(&format!(
        "version: 1\nsecretStores:\n  seg-pg-store: {{ type: file, segment: seg-pg }}\n  seg-my-store: {{ type: file, segment: seg-my }}\nservices:\n{pg}{my}envs:\n  prod:\n    PG_PASSWORD:\n      from: {{ store: \"store://seg-pg-store/app/pg#password\", service: \"svc://pg?kind=db_password\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {} }} }}\n    MY_PASSWORD:\n      from: {{ store: \"store://seg-my-store/app/my#password\", service: \"svc://my?kind=db_password\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {} }} }}\n",
        pg_user.name, my_user.name
    ));
    for (agent, store, admin) in
        [("a", "seg-pg-store", &pg_admin), ("b", "seg-my-store", &my_admin)]
    {
        project.put(agent, store, "db/admin", "user", &admin.user);
        project.put(agent, store, "db/admin", "password", &admin.password);
    }
    project.put("a", "seg-pg-store", "app/pg", "password", OLD);
    project.put("b", "seg-my-store", "app/my", "password", OLD);

    let cluster = TestCluster::start(3).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let follower = *cluster.ids().iter().find(|&&id| id != leader).unwrap();
    // Enrolment through a follower is sent on to the leader.
    let token_a = agent_token(&cluster, "seg-pg", 600).await;
    let token_b = agent_token(&cluster, "seg-my", 600).await;
    let a = enroll(&project.data_dir("a"), cluster.address(follower), &token_a).await.unwrap();
    let b = enroll(&project.data_dir("b"), cluster.address(leader), &token_b).await.unwrap();
    assert_eq!((a.segment.as_str(), b.segment.as_str()), ("seg-pg", "seg-my"));
    assert_ne!(a.agent_id, b.agent_id);

    // Each agent starts from a follower's address and is sent on to the leader.
    let agent_a = project.start("a", &[cluster.address(follower)]);
    let agent_b = project.start("b", &[cluster.address(follower)]);
    assert_eq!(wait_connected(&agent_a).await, cluster.address(leader));
    wait_connected(&agent_b).await;

    let agents = list_agents(&cluster).await;
    let listed_a = agents.iter().find(|x| x.agent_id == a.agent_id).unwrap();
    assert!(listed_a.connected, "{listed_a:?}");
    assert_eq!(listed_a.segment, "seg-pg");
    assert_eq!(listed_a.adapters, ["postgresql"]);
    assert_eq!(listed_a.stores, ["seg-pg-store"]);
    assert_eq!(listed_a.services, ["pg"]);
    assert!(listed_a.certificate_not_after.is_some() && listed_a.last_heartbeat.is_some());

    let pg_run = rotate(&cluster, "prod", "PG_PASSWORD").await;
    let my_run = rotate(&cluster, "prod", "MY_PASSWORD").await;
    assert_eq!(pg_run.state_name(), "Completed", "{pg_run:?}");
    assert_eq!(my_run.state_name(), "Completed", "{my_run:?}");
    assert!(pg_run.steps.iter().all(|s| s.agent_id == a.agent_id), "{pg_run:?}");
    assert!(my_run.steps.iter().all(|s| s.agent_id == b.agent_id), "{my_run:?}");

    let pg_new = project.read("a", "seg-pg-store", "app/pg", "password").unwrap();
    let my_new = project.read("b", "seg-my-store", "app/my", "password").unwrap();
    assert_ne!(pg_new, OLD);
    assert_ne!(my_new, OLD);
    assert!(logs_in(Flavor::Postgres, &pg_user.name, &pg_new).await);
    assert!(!logs_in(Flavor::Postgres, &pg_user.name, OLD).await);
    assert!(logs_in(Flavor::MariaDb, &my_user.name, &my_new).await);
    assert!(!logs_in(Flavor::MariaDb, &my_user.name, OLD).await);

    agent_a.stop().await;
    agent_b.stop().await;
    cluster.shutdown().await;
    pg_user.drop_user().await;
    my_user.drop_user().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_tokens_are_single_use_bound_to_a_cluster_and_expire() {
    let project = AgentProject::new("version: 1\nsecretStores:\n  local: { type: file }\n");
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let address = cluster.address(leader).to_owned();
    let token = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("a"), &address, &token).await.unwrap();
    let reused = enroll(&project.data_dir("b"), &address, &token).await.unwrap_err();
    assert!(format!("{reused:#}").contains("already used"), "{reused:#}");

    // A token whose expiry has passed.
    let secret = "ab".repeat(32);
    let expired = dsops_identity::JoinToken {
        ca_fingerprint: cluster.control(leader).peer_fingerprint().to_owned(),
        secret: secret.clone(),
    };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    cluster
        .write(
            "t70-expiring",
            Command::CreateAgentToken {
                token_hash: dsops_identity::JoinToken::secret_hash(&secret),
                segment: "default".into(),
                expires_at_ms: now + 300,
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let late = enroll(&project.data_dir("c"), &address, &expired.encode_agent()).await.unwrap_err();
    assert!(format!("{late:#}").contains("expired"), "{late:#}");

    // An unknown token is refused before the node signs or writes anything.
    let entries_before = cluster.control(leader).metrics().last_applied.map(|l| l.index);
    let unknown = dsops_identity::JoinToken {
        ca_fingerprint: cluster.control(leader).peer_fingerprint().to_owned(),
        secret: "ef".repeat(32),
    };
    let refused =
        enroll(&project.data_dir("e"), &address, &unknown.encode_agent()).await.unwrap_err();
    assert!(format!("{refused:#}").contains("unknown enrolment token"), "{refused:#}");
    let entries_after = cluster.control(leader).metrics().last_applied.map(|l| l.index);
    assert_eq!(entries_before, entries_after, "a refused enrolment wrote nothing to the log");

    // A token of another cluster: the agent refuses the server before sending anything.
    let other = dsops_identity::JoinToken { ca_fingerprint: "cd".repeat(32), secret };
    let foreign =
        enroll(&project.data_dir("d"), &address, &other.encode_agent()).await.unwrap_err();
    assert!(format!("{foreign:#}").contains("does not match"), "{foreign:#}");
    assert_eq!(list_agents(&cluster).await.len(), 1, "only the first enrolment took");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_is_cut_off_and_refused_on_every_node() {
    let project = AgentProject::new("version: 1\nsecretStores:\n  local: { type: file }\n");
    let cluster = TestCluster::start(3).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let token = agent_token(&cluster, "default", 600).await;
    let enrolled = enroll(&project.data_dir("a"), cluster.address(leader), &token).await.unwrap();
    let servers: Vec<&str> = cluster.ids().iter().map(|&id| cluster.address(id)).collect();
    let agent = project.start("a", &servers);
    wait_connected(&agent).await;

    let started = std::time::Instant::now();
    let response = cluster
        .admin_client(leader)
        .revoke_agent(dsops_proto::wire::admin::RevokeAgentRequest {
            request_id: dsops_cli::embedded::random_id(),
            agent_id: enrolled.agent_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.sessions_closed, 1);
    // The session ends, and every later attempt, at any node, is refused.
    let mut state = agent.state.clone();
    wait_for("the revoked agent to be refused", Duration::from_secs(5), || {
        let current = state.borrow_and_update().clone();
        async move {
            match current {
                dsops_agent::session::SessionState::Disconnected { reason, failures }
                    if reason.contains("revoked") && failures >= 1 =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(list_agents(&cluster).await.is_empty(), "a revoked agent is not listed");
    for id in cluster.ids() {
        let control = cluster.control(id);
        wait_audit(control, "agent.session_refused", &enrolled.agent_id, Duration::from_secs(5))
            .await;
    }
    agent.stop().await;
    cluster.shutdown().await;
}

/// A revocation that reaches the session only through the log (no admin call on the node that
/// holds the session, which closes it directly): the state machine's notice ends it. Sessions
/// do not poll the state, so without the notice it would stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_in_the_log_ends_the_session() {
    let project = AgentProject::new("version: 1\nsecretStores:\n  local: { type: file }\n");
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let token = agent_token(&cluster, "default", 600).await;
    let enrolled = enroll(&project.data_dir("a"), cluster.address(1), &token).await.unwrap();
    let agent = project.start("a", &[cluster.address(1)]);
    wait_connected(&agent).await;
    // An unrelated write changes nothing for the session.
    cluster
        .write(
            "t70-unrelated",
            Command::AppendAudit {
                action: "test".into(),
                subject: "x".into(),
                detail: String::new(),
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(&*agent.state.borrow(), dsops_agent::session::SessionState::Connected { .. }));

    cluster
        .write(
            "t70-revoke-identity",
            Command::RevokeIdentity {
                role: "agent".into(),
                name: enrolled.agent_id.clone(),
                reason: "key leaked".into(),
            },
        )
        .await;
    let mut state = agent.state.clone();
    wait_for("the session to end on the revocation", Duration::from_secs(3), || {
        let current = state.borrow_and_update().clone();
        async move {
            match current {
                dsops_agent::session::SessionState::Disconnected { reason, .. }
                    if reason.contains("revoked") =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    agent.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_an_agent_of_its_segment_and_says_so() {
    let project = AgentProject::new(
        "version: 1\nsecretStores:\n  far: { type: file, segment: far-away }\nenvs:\n  prod:\n    SIGNING_KEY:\n      from: { store: \"store://far/app/jwt#key\" }\n      rotation: { strategy: random }\n",
    );
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let run_id = dsops_tests::agents::start_rotation(&cluster, "prod", "SIGNING_KEY").await;
    let status = |cluster: &TestCluster| {
        let mut admin = cluster.admin_client(leader);
        async move {
            admin
                .rotation_status(dsops_proto::wire::admin::RotationStatusRequest {
                    env: "prod".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .secrets
                .remove(0)
        }
    };
    let waiting = status(&cluster).await;
    assert_eq!(waiting.status, "waiting_for_agent", "{waiting:?}");
    // An agent of another segment does not help.
    let other = agent_token(&cluster, "default", 600).await;
    enroll(&project.data_dir("other"), cluster.address(leader), &other).await.unwrap();
    let agent_other = project.start("other", &[cluster.address(leader)]);
    wait_connected(&agent_other).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&cluster).await.status, "waiting_for_agent");
    // One of its segment does.
    let token = agent_token(&cluster, "far-away", 600).await;
    enroll(&project.data_dir("far"), cluster.address(leader), &token).await.unwrap();
    let agent = project.start("far", &[cluster.address(leader)]);
    wait_connected(&agent).await;
    let run = dsops_tests::agents::wait_run(&cluster, &run_id, Duration::from_secs(30)).await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    assert_eq!(status(&cluster).await.status, "healthy");
    assert!(project.read("far", "far", "app/jwt", "key").is_some_and(|k| k.len() >= 32));
    agent.stop().await;
    agent_other.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_refuses_work_its_own_policy_forbids_with_a_signed_refusal() {
    let project = AgentProject::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  prod:\n    SIGNING_KEY:\n      from: { store: \"store://local/app/jwt#key\" }\n      rotation: { strategy: random }\n",
    );
    project.put("a", "local", "app/jwt", "key", "first-key-0000000000000000000000000");
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let leader = cluster.leader().await;
    let token = agent_token(&cluster, "default", 600).await;
    let enrolled = enroll(&project.data_dir("a"), cluster.address(leader), &token).await.unwrap();
    let policy = dsops_agent::config::AgentPolicy {
        services: None,
        strategies: Some(["immediate".to_owned()].into()),
    };
    let agent = project.start_with("a", &[cluster.address(leader)], policy);
    wait_connected(&agent).await;

    // Refused at stage, and the rollback refused too (the policy holds for every step): the run
    // stops for a human, with nothing changed.
    let run = rotate(&cluster, "prod", "SIGNING_KEY").await;
    assert_eq!(run.state_name(), "Quarantined", "{run:?}");
    assert!(run.steps.iter().all(|s| s.outcome_name() == "refused"), "{run:?}");
    let first = &run.steps[0];
    assert_eq!((first.step_name(), first.outcome_name()), ("stage", "refused"), "{run:?}");
    assert_eq!(
        first.agent_id, enrolled.agent_id,
        "the refusal is the agent's, signed and verified"
    );
    assert!(first.detail.contains("agent policy: strategy random"), "{first:?}");
    assert_eq!(
        project.read("a", "local", "app/jwt", "key").as_deref(),
        Some("first-key-0000000000000000000000000"),
        "nothing changed"
    );
    agent.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_over_the_session_before_they_expire() {
    let project = AgentProject::new("version: 1\nsecretStores:\n  local: { type: file }\n");
    let options = dsops_control_plane::node::NodeOptions {
        // Renewal is looked at on each 5 s heartbeat and falls due at two thirds (12 s).
        agent_cert_validity: Duration::from_secs(18),
        ..dsops_tests::cluster::fast_options()
    };
    let cluster = TestCluster::start_with(1, options).await;
    let leader = cluster.leader().await;
    let token = agent_token(&cluster, "default", 600).await;
    let first = enroll(&project.data_dir("a"), cluster.address(leader), &token).await.unwrap();
    let agent = project.start("a", &[cluster.address(leader)]);
    wait_connected(&agent).await;
    // Renewed once two thirds (12 s) are gone, at the next heartbeat.
    let dir = project.data_dir("a");
    let renewed = wait_for("a renewed certificate", Duration::from_secs(30), || {
        let dir = dir.clone();
        async move {
            let state = dsops_agent::host::AgentLink::load(&dir).unwrap().state();
            (state.cert_not_after_ms > first.cert_not_after_ms).then_some(state)
        }
    })
    .await;
    assert_ne!(renewed.cert_pem, first.cert_pem);
    assert_ne!(renewed.key_pem, first.key_pem, "a new key, not only a new certificate");
    let listed = list_agents(&cluster).await;
    let expiry = listed[0].certificate_not_after.as_ref().unwrap().seconds as u64 * 1000;
    assert!(expiry + 1000 >= renewed.cert_not_after_ms, "the cluster knows the new expiry");
    // When the certificate the session was opened with expires, the session ends and the agent
    // comes back at once with the renewed one.
    let wait = first.cert_not_after_ms.saturating_sub(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64,
    );
    tokio::time::sleep(Duration::from_millis(wait + 500)).await;
    let mut state = agent.state.clone();
    wait_for("a second session, on the renewed certificate", Duration::from_secs(10), || {
        let current = state.borrow_and_update().clone();
        async move {
            matches!(current, dsops_agent::session::SessionState::Connected { sessions, .. } if sessions >= 2)
                .then_some(())
        }
    })
    .await;
    // And a restarted agent connects with the renewed one.
    agent.stop().await;
    let again = project.start("a", &[cluster.address(leader)]);
    wait_connected(&again).await;
    again.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_clock_is_behind_the_agents_still_gives_steps_their_time() {
    let project = AgentProject::new(
        "version: 1\nsecretStores:\n  local: { type: file }\nenvs:\n  prod:\n    SIGNING_KEY:\n      from: { store: \"store://local/app/jwt#key\" }\n      rotation: { strategy: random }\n",
    );
    project.put("a", "local", "app/jwt", "key", "first-key-0000000000000000000000000");
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let agent = enrolled_agent(&project, &cluster, "a", "default").await;
    let leader = cluster.leader().await;

    // An NTP step puts the leader two minutes behind the agent: every deadline it sets (a minute
    // from its now) has passed on the agent's clock. The agent goes by the time the leader says
    // is left, so the steps are performed and the run completes.
    cluster.control(leader).step_clock(-120_000);
    let run = rotate(&cluster, "prod", "SIGNING_KEY").await;
    assert_eq!(run.state_name(), "Completed", "{run:?}");
    assert!(run.steps.iter().all(|s| s.outcome_name() == "succeeded"), "{run:?}");
    let key = project.read("a", "local", "app/jwt", "key").unwrap();
    assert_ne!(key, "first-key-0000000000000000000000000", "rotated");
    agent.stop().await;
    cluster.shutdown().await;
}
