//! Operators and roles on a real cluster over mTLS: the bundle `init` wrote is the first admin
//! and an operator certificate without a role may do nothing; every admin RPC is checked against the caller's roles (viewer, operator, approver, admin; operator scoped to
//! an environment), and a refusal is `permission_denied` naming the operator and the permission,
//! is counted for the audit log, and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::collections::BTreeMap;
use std::time::Duration;

use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config};
use dsops_proto::ErrorCode;
use dsops_proto::domain::OperatorRole;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_tests::{TestCluster, wait_for};
use tonic::transport::Channel;

fn client(cluster: &TestCluster, node: u64, identity: &CertifiedKey) -> AdminClient<Channel> {
    let tls = client_config(&cluster.admin().ca_pem, Some(identity)).unwrap();
    AdminClient::new(dsops_identity::channel(cluster.address(node), API_SERVER_NAME, tls).unwrap())
}

fn grant(operator: &str, role: OperatorRole, env: &str, id: &str) -> wire::GrantRoleRequest {
    wire::GrantRoleRequest {
        request_id: format!("grant-{id}-0123456789"),
        operator: operator.into(),
        grant: Some(wire::RoleGrant { role: role.to_wire(), env: env.into() }),
    }
}

/// Calls every admin RPC once as `who` and says, per RPC, whether it was refused for want of a
/// permission (`true`) or let through (any other answer, success or not).
async fn denied(mut c: AdminClient<Channel>, who: &str) -> BTreeMap<&'static str, bool> {
    let id = |rpc: &str| format!("{who}-{rpc}-0123456789");
    let secret = |env: &str| Some(wire::SecretKey { env: env.into(), key: "DB_PASSWORD".into() });
    let mut out = BTreeMap::new();
    let mut note = |rpc: &'static str, result: Result<(), tonic::Status>| {
        let refused = match result {
            Ok(()) => false,
            Err(status) => {
                let code = ErrorCode::from_status(&status);
                if code == ErrorCode::PermissionDenied {
                    let message = status.message();
                    assert!(message.contains(&format!("operator {who}")), "{rpc}: {message}");
                }
                code == ErrorCode::PermissionDenied
            }
        };
        out.insert(rpc, refused);
    };
    note("cluster_status", c.cluster_status(wire::ClusterStatusRequest {}).await.map(drop));
    note("get_config", c.get_config(wire::GetConfigRequest {}).await.map(drop));
    note(
        "rotation_status",
        c.rotation_status(wire::RotationStatusRequest { env: "dev".into(), ..Default::default() })
            .await
            .map(drop),
    );
    note(
        "rotation_history",
        c.rotation_history(wire::RotationHistoryRequest { secret: secret("dev"), limit: 0 })
            .await
            .map(drop),
    );
    note(
        "get_runs",
        c.get_runs(wire::GetRunsRequest { run_ids: vec![], with_steps: false }).await.map(drop),
    );
    note("list_agents", c.list_agents(wire::ListAgentsRequest {}).await.map(drop));
    note("list_operators", c.list_operators(wire::ListOperatorsRequest {}).await.map(drop));
    note(
        "list_approvals",
        c.list_approvals(wire::ListApprovalsRequest { env: String::new() }).await.map(drop),
    );
    note(
        "list_audit",
        c.list_audit(wire::ListAuditRequest { limit: 10, ..wire::ListAuditRequest::default() })
            .await
            .map(drop),
    );
    note(
        "promotion_status",
        c.promotion_status(wire::PromotionStatusRequest::default()).await.map(drop),
    );
    note(
        "halt_promotion",
        c.halt_promotion(wire::HaltPromotionRequest {
            line: String::new(),
            all: true,
            reason: "matrix".into(),
            request_id: id("halt"),
        })
        .await
        .map(drop),
    );
    let rotate = |env: &str, rpc: &str| wire::RotateRequest {
        request_id: id(rpc),
        selector: Some(wire::rotate_request::Selector::Secret(secret(env).unwrap())),
        force: false,
        dry_run: true,
        reason: String::new(),
        only: vec![],
        break_glass: false,
    };
    note("rotate_dev", c.rotate(rotate("dev", "rotate-dev")).await.map(drop));
    note("rotate_prod", c.rotate(rotate("prod", "rotate-prod")).await.map(drop));
    note(
        "rollback_prod",
        c.rollback(wire::RollbackRequest { request_id: id("rollback"), secret: secret("prod") })
            .await
            .map(drop),
    );
    note(
        "apply_config",
        c.apply_config(wire::ApplyConfigRequest {
            request_id: id("apply"),
            config_yaml: "version: 1\n".into(),
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await
        .map(drop),
    );
    note(
        "create_join_token",
        c.create_join_token(wire::CreateJoinTokenRequest {
            request_id: id("join"),
            ttl_seconds: 600,
        })
        .await
        .map(drop),
    );
    note(
        "create_agent_token",
        c.create_agent_token(wire::CreateAgentTokenRequest {
            request_id: id("agent"),
            segment: "default".into(),
            ttl_seconds: 600,
        })
        .await
        .map(drop),
    );
    note(
        "revoke_agent",
        c.revoke_agent(wire::RevokeAgentRequest {
            request_id: id("revoke"),
            agent_id: "agt-0000000000000000".into(),
        })
        .await
        .map(drop),
    );
    note(
        "grant_role",
        c.grant_role(grant("nobody", OperatorRole::Viewer, "", &format!("{who}x"))).await.map(drop),
    );
    note(
        "invite_operator",
        c.invite_operator(wire::InviteOperatorRequest {
            request_id: id("invite"),
            name: "nobody".into(),
            grants: vec![wire::RoleGrant { role: OperatorRole::Viewer.to_wire(), env: "".into() }],
            ttl_seconds: 600,
            certificate_days: 1,
        })
        .await
        .map(drop),
    );
    note(
        "revoke_operator",
        c.revoke_operator(wire::RevokeOperatorRequest {
            request_id: id("revoke-op"),
            name: "nobody".into(),
            reason: String::new(),
        })
        .await
        .map(drop),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_call_is_checked_against_the_callers_roles() {
    let cluster = TestCluster::start(1).await;
    let leader = cluster.leader().await;
    let pki = dsops_control_plane::pki::ClusterPki::load(&cluster.data_dir(1).tls()).unwrap();
    let person = |name: &str| pki.issue_operator(name, 1).unwrap();
    let (vera, otto, anna, mallory) =
        (person("vera"), person("otto"), person("anna"), person("mallory"));

    // The bundle `init` wrote is the first admin; a certificate without a role may do nothing.
    let mut early = client(&cluster, leader, &mallory);
    let refused = early.cluster_status(wire::ClusterStatusRequest {}).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&refused), ErrorCode::PermissionDenied, "{refused:?}");

    let mut admin = cluster.admin_client(leader);
    admin.grant_role(grant("vera", OperatorRole::Viewer, "", "v")).await.unwrap();
    admin.grant_role(grant("otto", OperatorRole::Operator, "dev", "o")).await.unwrap();
    admin.grant_role(grant("anna", OperatorRole::Approver, "", "a")).await.unwrap();
    let listed = admin.list_operators(wire::ListOperatorsRequest {}).await.unwrap().into_inner();
    let names: Vec<&str> = listed.operators.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["admin", "anna", "otto", "vera"]);

    let reads = [
        "cluster_status",
        "get_config",
        "rotation_status",
        "rotation_history",
        "get_runs",
        "list_agents",
        "list_operators",
        "list_approvals",
        "list_audit",
        "promotion_status",
    ];
    let expect = |allowed: &[&str]| -> BTreeMap<&'static str, bool> {
        let all = denied_names();
        all.into_iter().map(|rpc| (rpc, !allowed.contains(&rpc))).collect()
    };
    let viewer = denied(client(&cluster, leader, &vera), "vera").await;
    assert_eq!(viewer, expect(&reads), "viewer");
    let approver = denied(client(&cluster, leader, &anna), "anna").await;
    assert_eq!(approver, expect(&reads), "approver (deciding is checked per run: t82)");
    let mut operator_allowed = reads.to_vec();
    operator_allowed.push("rotate_dev");
    let operator = denied(client(&cluster, leader, &otto), "otto").await;
    assert_eq!(operator, expect(&operator_allowed), "operator in dev");
    let nobody = denied(client(&cluster, leader, &mallory), "mallory").await;
    assert_eq!(nobody, expect(&[]), "an operator with no role");
    // A refusal changed nothing: vera's apply stored no configuration, mallory granted nothing.
    let config = admin.get_config(wire::GetConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(config.version, 0);
    let listed = admin.list_operators(wire::ListOperatorsRequest {}).await.unwrap().into_inner();
    assert!(!listed.operators.iter().any(|o| o.name == "nobody"), "{listed:?}");
    let everything = denied(cluster.admin_client(leader), "admin").await;
    assert!(everything.values().all(|refused| !refused), "admin: {everything:?}");

    // The last admin cannot be taken away.
    let last =
        admin.ungrant_role(grant("admin", OperatorRole::Admin, "", "last")).await.unwrap_err();
    assert_eq!(ErrorCode::from_status(&last), ErrorCode::FailedPrecondition, "{last:?}");
    // Taking otto's role away refuses what it allowed.
    admin.ungrant_role(grant("otto", OperatorRole::Operator, "dev", "o2")).await.unwrap();
    let after = denied(client(&cluster, leader, &otto), "otto").await;
    assert_eq!(after, expect(&[]), "otto without a role");
    // Refusals reach the audit log as summaries.
    wait_for("a refusal summary in the audit log", Duration::from_secs(10), || async {
        let history = cluster.control(leader).audit_history(0, usize::MAX).ok()?;
        history.events.iter().any(|e| e.action == "permission.denied").then_some(())
    })
    .await;
    cluster.shutdown().await;
}

fn denied_names() -> Vec<&'static str> {
    vec![
        "apply_config",
        "cluster_status",
        "create_agent_token",
        "create_join_token",
        "get_config",
        "get_runs",
        "grant_role",
        "invite_operator",
        "list_agents",
        "list_approvals",
        "list_audit",
        "list_operators",
        "halt_promotion",
        "promotion_status",
        "revoke_agent",
        "revoke_operator",
        "rollback_prod",
        "rotate_dev",
        "rotate_prod",
        "rotation_history",
        "rotation_status",
    ]
}
