//! Approvals on a real cluster with a remote agent: a rotation of a secret whose environment
//! requires approval waits in `AwaitingApproval` (the agent is not asked to do anything) until
//! the required number of distinct approvers, never the requester, signed an approval bound to
//! the run's plan; a configuration change resets the decisions; one denial ends the run; an
//! unapproved request expires; forged and replayed signatures are refused; every decision is
//! kept with its signature and certificate and verifies offline. A scheduled run of such a
//! secret waits for approval too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::time::Duration;

use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config};
use dsops_proto::ErrorCode;
use dsops_proto::domain::{OperatorRole, decision_bytes};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_tests::agents::{AgentProject, enrolled_agent, wait_run};
use dsops_tests::cluster::fast_options;
use dsops_tests::{TestCluster, wait_for};
use tonic::transport::Channel;

const CONFIG: &str = "version: 1
secretStores:
  local: { type: file }
rotation:
  approvals:
    prod: { required: 2, approvers: [\"role:approver\"], expires: 1h }
    stage: { required: 1, approvers: [vera], expires: 5s }
envs:
  prod:
    API_KEY:
      from: { store: \"store://local/app/api#key\" }
      rotation: { strategy: random, config: { length: 32, charset: hex } }
  stage:
    API_KEY:
      from: { store: \"store://local/stage/api#key\" }
      rotation: { strategy: random, config: { length: 32, charset: hex } }
  dev:
    API_KEY:
      from: { store: \"store://local/dev/api#key\" }
      rotation: { strategy: random, config: { length: 32, charset: hex } }
";

struct People {
    otto: CertifiedKey,
    anna: CertifiedKey,
    bob: CertifiedKey,
    carl: CertifiedKey,
    vera: CertifiedKey,
}

fn client(cluster: &TestCluster, node: u64, identity: &CertifiedKey) -> AdminClient<Channel> {
    let tls = client_config(&cluster.admin().ca_pem, Some(identity)).unwrap();
    AdminClient::new(dsops_identity::channel(cluster.address(node), API_SERVER_NAME, tls).unwrap())
}

async fn grant(cluster: &TestCluster, name: &str, role: OperatorRole, env: &str) {
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .grant_role(wire::GrantRoleRequest {
            request_id: format!("grant-{name}-{env}-{}", role.name()),
            operator: name.into(),
            grant: Some(wire::RoleGrant { role: role.to_wire(), env: env.into() }),
        })
        .await
        .unwrap();
}

async fn people(cluster: &TestCluster) -> People {
    let pki = dsops_control_plane::pki::ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();
    let person = |name: &str| pki.issue_operator(name, 1).unwrap();
    grant(cluster, "otto", OperatorRole::Operator, "").await;
    grant(cluster, "anna", OperatorRole::Approver, "prod").await;
    grant(cluster, "bob", OperatorRole::Approver, "prod").await;
    grant(cluster, "carl", OperatorRole::Approver, "dev").await;
    grant(cluster, "vera", OperatorRole::Approver, "").await;
    People {
        otto: person("otto"),
        anna: person("anna"),
        bob: person("bob"),
        carl: person("carl"),
        vera: person("vera"),
    }
}

async fn rotate(
    cluster: &TestCluster,
    who: &CertifiedKey,
    env: &str,
    reason: &str,
) -> wire::RunSummary {
    let leader = cluster.leader().await;
    let response = client(cluster, leader, who)
        .rotate(wire::RotateRequest {
            request_id: format!("rotate-{env}-{}", dsops_proto::now_ms()),
            selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
                env: env.into(),
                key: "API_KEY".into(),
            })),
            force: true,
            dry_run: false,
            reason: reason.into(),
            only: vec![],
            break_glass: false,
        })
        .await
        .unwrap()
        .into_inner();
    response.runs.into_iter().next().unwrap()
}

async fn get(cluster: &TestCluster, run_id: &str) -> wire::RunSummary {
    let leader = cluster.leader().await;
    let request = wire::GetRunsRequest { run_ids: vec![run_id.into()], with_steps: true };
    cluster.admin_client(leader).get_runs(request).await.unwrap().into_inner().runs.remove(0)
}

fn phase(run: &wire::RunSummary) -> &'static str {
    dsops_proto::domain::RunStatus::of(run).name()
}

/// A decision on `run` signed with `signer`'s key, sent over `sender`'s connection.
async fn decide_as(
    cluster: &TestCluster,
    sender: &CertifiedKey,
    signer: &CertifiedKey,
    run: &wire::RunSummary,
    approve: bool,
    reason: &str,
) -> Result<wire::RunSummary, tonic::Status> {
    let approval = run.approval.clone().unwrap();
    let signed_at_ms = dsops_proto::now_ms();
    let bytes = decision_bytes(
        &run.run_id,
        approval.round,
        &approval.plan_digest,
        approve,
        signed_at_ms,
        reason,
    );
    let signature = dsops_identity::sign_message(&signer.key_pem, &bytes).unwrap();
    let leader = cluster.leader().await;
    client(cluster, leader, sender)
        .decide(wire::DecideRequest {
            request_id: format!("decide-{}", dsops_proto::hex(&signature[..12])),
            run_id: run.run_id.clone(),
            approve,
            reason: reason.into(),
            plan_digest: approval.plan_digest.clone(),
            round: approval.round,
            signed_at_ms,
            signature_hex: dsops_proto::hex(&signature),
        })
        .await
        .map(|r| r.into_inner().run.unwrap())
}

async fn decide(
    cluster: &TestCluster,
    who: &CertifiedKey,
    run: &wire::RunSummary,
    approve: bool,
    reason: &str,
) -> Result<wire::RunSummary, tonic::Status> {
    decide_as(cluster, who, who, run, approve, reason).await
}

fn code(result: Result<wire::RunSummary, tonic::Status>) -> ErrorCode {
    ErrorCode::from_status(&result.unwrap_err())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_waits_for_distinct_signed_approvals_bound_to_its_plan() {
    let cluster = TestCluster::start(1).await;
    let project = AgentProject::new(CONFIG);
    project.apply(&cluster).await;
    let p = people(&cluster).await;
    let _agent = enrolled_agent(&project, &cluster, "a1", "default").await;

    // Requested by otto: it waits, and the agent is asked for nothing.
    let run = rotate(&cluster, &p.otto, "prod", "quarterly rotation, CHG-1").await;
    assert_eq!(phase(&run), "AwaitingApproval", "{run:?}");
    assert!(!run.waiting_for_agent);
    assert_eq!(run.requested_by, "otto");
    assert!(run.reason.contains("CHG-1"), "{}", run.reason);
    let approval = run.approval.clone().unwrap();
    assert_eq!((approval.required, approval.round), (2, 0));
    assert_eq!(approval.plan_digest.len(), 64);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(project.read("a1", "local", "app/api", "key"), None, "nothing ran");
    let listed = cluster
        .admin_client(1)
        .list_approvals(wire::ListApprovalsRequest { env: "prod".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1);

    // The requester never counts; an approver of another environment may not decide.
    assert_eq!(code(decide(&cluster, &p.otto, &run, true, "").await), ErrorCode::PermissionDenied);
    assert_eq!(code(decide(&cluster, &p.carl, &run, true, "").await), ErrorCode::PermissionDenied);
    // A signature by someone else's key, or anna's own signature replayed by bob, is refused.
    assert_eq!(
        code(decide_as(&cluster, &p.bob, &p.anna, &run, true, "").await),
        ErrorCode::PermissionDenied
    );
    // anna approves: 1 of 2; a second approval by anna counts once.
    let after = decide(&cluster, &p.anna, &run, true, "looks right").await.unwrap();
    assert_eq!(phase(&after), "AwaitingApproval");
    assert_eq!(code(decide(&cluster, &p.anna, &run, true, "").await), ErrorCode::AlreadyExists);

    // A configuration change resets the decisions: anna's no longer counts, and a decision on
    // the old plan is refused.
    let changed = CONFIG
        .replace("length: 32, charset: hex } }\n  stage", "length: 48, charset: hex } }\n  stage");
    assert_ne!(changed, CONFIG);
    std::fs::write(&project.project.config, &changed).unwrap();
    project.apply(&cluster).await;
    let replanned = wait_for("the plan resolved again", Duration::from_secs(10), || async {
        let run = get(&cluster, &run.run_id).await;
        let a = run.approval.clone()?;
        (a.round == 1 && a.plan_digest != approval.plan_digest).then_some(run)
    })
    .await;
    assert!(replanned.approval.as_ref().unwrap().decisions.is_empty());
    assert_eq!(code(decide(&cluster, &p.bob, &run, true, "").await), ErrorCode::FailedPrecondition);

    // Two distinct approvers on the new plan: it starts and completes.
    decide(&cluster, &p.anna, &replanned, true, "still right").await.unwrap();
    let approved = decide(&cluster, &p.bob, &replanned, true, "ok").await.unwrap();
    assert_ne!(phase(&approved), "AwaitingApproval");
    let done = wait_run(&cluster, &run.run_id, Duration::from_secs(60)).await;
    assert_eq!(phase(&done), "Completed", "{done:?}");
    assert_eq!(
        project.read("a1", "local", "app/api", "key").unwrap().len(),
        48,
        "the new plan ran"
    );

    // The history keeps each decision with its signature and certificate: it verifies offline.
    let history = cluster
        .admin_client(1)
        .rotation_history(wire::RotationHistoryRequest {
            secret: Some(wire::SecretKey { env: "prod".into(), key: "API_KEY".into() }),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let kept = history.runs[0].approval.clone().unwrap();
    let names: Vec<&str> = kept.decisions.iter().map(|d| d.operator.as_str()).collect();
    assert_eq!(names, ["anna", "bob"]);
    assert!(kept.granted_at.is_some());
    for d in &kept.decisions {
        let bytes = decision_bytes(
            &history.runs[0].run_id,
            kept.round,
            &kept.plan_digest,
            d.approve,
            d.signed_at.unwrap().seconds as u64 * 1000
                + d.signed_at.unwrap().nanos as u64 / 1_000_000,
            &d.reason,
        );
        let signature = dsops_proto::hex_decode(&d.signature_hex).unwrap();
        dsops_identity::verify_message(&d.certificate_pem, &bytes, &signature).unwrap();
    }

    // One denial ends a run (a denial needs a reason); nothing changes.
    let before = project.read("a1", "local", "app/api", "key");
    let run = rotate(&cluster, &p.otto, "prod", "again").await;
    assert_eq!(code(decide(&cluster, &p.bob, &run, false, "").await), ErrorCode::InvalidArgument);
    let denied = decide(&cluster, &p.bob, &run, false, "not during the freeze").await.unwrap();
    assert_eq!(phase(&denied), "Denied");
    assert!(denied.detail.contains("not during the freeze"), "{}", denied.detail);
    assert_eq!(project.read("a1", "local", "app/api", "key"), before);

    // A named approver only: vera, within 5 s, or the request expires.
    let run = rotate(&cluster, &p.otto, "stage", "").await;
    assert_eq!(code(decide(&cluster, &p.anna, &run, true, "").await), ErrorCode::PermissionDenied);
    let expired = wait_run(&cluster, &run.run_id, Duration::from_secs(30)).await;
    assert_eq!(phase(&expired), "Expired", "{expired:?}");
    assert_eq!(
        code(decide(&cluster, &p.vera, &run, true, "").await),
        ErrorCode::FailedPrecondition
    );
    let events = cluster.control(1).audit_history(0, usize::MAX).unwrap().events;
    let seen = |action: &str| events.iter().any(|e| e.action == action);
    for action in [
        "approval.requested",
        "approval.approved",
        "approval.reset",
        "approval.granted",
        "approval.denied",
        "run.expired",
    ] {
        assert!(seen(action), "{action} is audited");
    }
    assert!(events.iter().any(|e| e.action == "approval.approved" && e.actor == "anna"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_of_an_approval_required_secret_waits_for_approval() {
    let cluster = TestCluster::start_with(
        1,
        dsops_control_plane::node::NodeOptions { scheduler: true, ..fast_options() },
    )
    .await;
    let config = CONFIG.replace(
        "      rotation: { strategy: random, config: { length: 32, charset: hex } }\n  stage",
        "      rotation: { strategy: random, schedule: \"* * * * *\", config: { length: 32, charset: hex } }\n  stage",
    );
    assert_ne!(config, CONFIG);
    let project = AgentProject::new(&config);
    project.apply(&cluster).await;
    let run_id = wait_for("a scheduled run", Duration::from_secs(90), || async {
        cluster
            .control(1)
            .read_local(|s| s.secrets.get("prod/API_KEY").and_then(|r| r.active_run.clone()))
            .await
    })
    .await;
    let run = get(&cluster, &run_id).await;
    assert_eq!(phase(&run), "AwaitingApproval", "{run:?}");
    assert!(run.requested_by.ends_with("scheduler"), "{}", run.requested_by);
    assert!(run.reason.starts_with("scheduled"), "{}", run.reason);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_glass_skips_approval_and_opens_a_review_another_operator_closes() {
    let cluster = TestCluster::start(1).await;
    let project = AgentProject::new(CONFIG);
    project.apply(&cluster).await;
    let p = people(&cluster).await;
    let _agent = enrolled_agent(&project, &cluster, "a1", "default").await;
    let break_glass = |reason: &str| wire::RotateRequest {
        request_id: format!("glass-{}", dsops_proto::now_ms()),
        selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
            env: "prod".into(),
            key: "API_KEY".into(),
        })),
        force: false,
        dry_run: false,
        reason: reason.into(),
        only: vec![],
        break_glass: true,
    };
    // Only an admin breaks glass, and only with a reason.
    let refused = client(&cluster, 1, &p.otto).rotate(break_glass("leaked")).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&refused), ErrorCode::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("break glass in prod"), "{}", refused.message());
    let mut admin = cluster.admin_client(1);
    let bare = admin.rotate(break_glass("")).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&bare), ErrorCode::InvalidArgument, "{bare:?}");
    let run =
        admin.rotate(break_glass("INC-77 key leaked")).await.unwrap().into_inner().runs.remove(0);
    assert_ne!(phase(&run), "AwaitingApproval", "no approval: {run:?}");
    let done = wait_run(&cluster, &run.run_id, Duration::from_secs(60)).await;
    assert_eq!(phase(&done), "Completed", "{done:?}");
    assert!(
        done.reason.contains("break-glass") && done.reason.contains("INC-77"),
        "{}",
        done.reason
    );

    // A review is open, shown by rotation status, and closed by someone else.
    let reviews = admin
        .list_reviews(wire::ListReviewsRequest { all: false })
        .await
        .unwrap()
        .into_inner()
        .reviews;
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    let review = &reviews[0];
    assert_eq!((review.opened_by.as_str(), review.run_id.as_str()), ("admin", run.run_id.as_str()));
    let status = admin
        .rotation_status(wire::RotationStatusRequest { env: "prod".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.secrets[0].review, review.id);
    let close = |who: &str, note: &str| wire::CloseReviewRequest {
        request_id: format!("close-{who}-0123456789"),
        review_id: review.id.clone(),
        note: note.into(),
    };
    let own = admin.close_review(close("admin", "fine")).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&own), ErrorCode::PermissionDenied, "{own:?}");
    let not_approver = client(&cluster, 1, &p.otto).close_review(close("otto", "ok")).await;
    assert_eq!(ErrorCode::from_status(&not_approver.unwrap_err()), ErrorCode::PermissionDenied);
    let closed = client(&cluster, 1, &p.anna)
        .close_review(close("anna", "leak confirmed; rotation was right"))
        .await
        .unwrap()
        .into_inner()
        .review
        .unwrap();
    assert_eq!(closed.closed_by, "anna");
    let open = admin.list_reviews(wire::ListReviewsRequest { all: false }).await.unwrap();
    assert!(open.into_inner().reviews.is_empty());
    let events = cluster.control(1).audit_history(0, usize::MAX).unwrap().events;
    assert!(events.iter().any(|e| e.action == "breakglass.used" && e.actor == "admin"));
    assert!(events.iter().any(|e| e.action == "review.closed" && e.actor == "anna"));
    cluster.shutdown().await;
}
