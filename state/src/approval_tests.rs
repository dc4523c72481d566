//! The approval and review rules as the state machine applies them, in log time.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{OperatorRole, RoleGrant};

use super::super::{
    ApplyContext, ApprovalDecision, ApprovalRule, Command, Outcome, Request, RunPhase, RunSpec,
    State, apply,
};

struct World {
    state: State,
    index: u64,
    now: u64,
}

impl World {
    fn new() -> World {
        let mut world = World { state: State::default(), index: 0, now: 1_000_000 };
        for (name, role, env) in [
            ("admin", OperatorRole::Admin, None),
            ("anna", OperatorRole::Approver, Some("prod")),
            ("bob", OperatorRole::Approver, None),
            ("carl", OperatorRole::Approver, Some("dev")),
            ("otto", OperatorRole::Operator, None),
        ] {
            let grant = RoleGrant { role, env: env.map(str::to_owned) };
            world.as_("admin", Command::SetRole { operator: name.into(), grant, granted: true });
        }
        world.store_config(1);
        world
    }

    fn as_(&mut self, actor: &str, command: Command) -> Outcome {
        self.index += 1;
        let request = Request {
            request_id: format!("r{}", self.index),
            actor: actor.into(),
            proposed_at_ms: self.now,
            command,
        };
        apply(&mut self.state, &request, ApplyContext { index: self.index }).outcome
    }

    fn store_config(&mut self, n: u32) -> Outcome {
        self.as_(
            "admin",
            Command::StoreConfig {
                config_yaml: format!("version: 1 # {n}\n"),
                config_path: "dsops.yaml".into(),
                catalog_files: Default::default(),
                fingerprints: Default::default(),
                expected_version: None,
                history_bytes: None,
            },
        )
    }

    fn spec(&self, required: u32, approvers: &[&str]) -> RunSpec {
        RunSpec {
            strategy: "random".into(),
            store_ref: "store://local/app/k#v".into(),
            service_ref: None,
            config_json: "{}".into(),
            segment: "default".into(),
            grace_ms: 0,
            max_attempts: 3,
            step_timeout_ms: 5_000,
            config_version: self.state.config_version(),
            value_format: None,
            approval: Some(ApprovalRule {
                required,
                approvers: approvers.iter().map(|s| s.to_string()).collect(),
                expires_ms: 60_000,
            }),
            promotion: None,
            rate_limit: None,
        }
    }

    fn request(&mut self, run_id: &str, spec: RunSpec, break_glass: bool) -> Outcome {
        self.as_(
            "otto",
            Command::RequestRun {
                run_id: run_id.into(),
                env: "prod".into(),
                key: format!("K_{run_id}"),
                spec,
                restore_previous: false,
                reason: "test".into(),
                break_glass,
                trace_parent: None,
            },
        )
    }

    fn decide(&mut self, who: &str, run_id: &str, approve: bool) -> Outcome {
        let approval = self.state.runs[run_id].approval.clone().unwrap();
        let decision = ApprovalDecision {
            operator: who.into(),
            approve,
            reason: if approve { String::new() } else { "no".into() },
            round: approval.round,
            plan_digest: approval.plan_digest,
            signed_at_ms: self.now,
            recorded_at_ms: 0,
            signature_hex: "30".into(),
            certificate_pem: "pem".into(),
        };
        self.as_(who, Command::DecideApproval { run_id: run_id.into(), decision })
    }

    fn phase(&self, run_id: &str) -> RunPhase {
        self.state.runs[run_id].phase
    }
}

fn refused(outcome: Outcome) -> ErrorCode {
    match outcome {
        Outcome::Rejected { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn quorum_of_distinct_eligible_approvers_never_the_requester() {
    let mut w = World::new();
    let spec = w.spec(2, &["role:approver"]);
    w.request("r1", spec, false);
    assert_eq!(w.phase("r1"), RunPhase::AwaitingApproval);
    assert!(w.state.runs["r1"].step.is_none(), "nothing to dispatch");
    assert!(w.state.ready.is_empty() && w.state.queued.is_empty());
    assert_eq!(refused(w.decide("otto", "r1", true)), ErrorCode::PermissionDenied, "requester");
    assert_eq!(refused(w.decide("carl", "r1", true)), ErrorCode::PermissionDenied, "dev only");
    assert!(matches!(w.decide("anna", "r1", true), Outcome::ApprovalRecorded { approvals: 1, .. }));
    assert_eq!(refused(w.decide("anna", "r1", true)), ErrorCode::AlreadyExists, "once");
    assert_eq!(w.phase("r1"), RunPhase::AwaitingApproval);
    w.decide("admin", "r1", true);
    assert_eq!(w.phase("r1"), RunPhase::Requested);
    assert!(w.state.runs["r1"].approval.as_ref().unwrap().granted_at_ms.is_some());
    assert!(w.state.queued.values().any(|q| q.iter().any(|(_, id)| id == "r1")), "queued now");
    assert_eq!(refused(w.decide("bob", "r1", true)), ErrorCode::FailedPrecondition, "started");
}

#[test]
fn a_named_approver_list_admits_only_those_names() {
    let mut w = World::new();
    let spec = w.spec(1, &["bob"]);
    w.request("r1", spec, false);
    assert_eq!(refused(w.decide("anna", "r1", true)), ErrorCode::PermissionDenied);
    w.decide("bob", "r1", true);
    assert_eq!(w.phase("r1"), RunPhase::Requested);
}

#[test]
fn a_configuration_change_resets_the_round_until_the_plan_is_resolved_again() {
    let mut w = World::new();
    let spec = w.spec(2, &["role:approver"]);
    w.request("r1", spec, false);
    w.decide("anna", "r1", true);
    let before = w.state.runs["r1"].approval.clone().unwrap();
    assert!(matches!(w.store_config(2), Outcome::ConfigStored { .. }));
    let reset = w.state.runs["r1"].approval.clone().unwrap();
    assert_eq!((reset.round, reset.decisions.len(), reset.past.len()), (1, 0, 1));
    // Until the plan is resolved under version 2, nobody can decide.
    let stale = w.decide("bob", "r1", true);
    assert_eq!(refused(stale), ErrorCode::FailedPrecondition);
    // A plan from the old version is refused; the new one is taken, with a new digest.
    let old = w.spec(2, &["role:approver"]);
    let mut older = old.clone();
    older.config_version = 1;
    let replan = |spec| Command::ReplanRun { run_id: "r1".into(), spec, reason: String::new() };
    assert_eq!(refused(w.as_("node-1", replan(Some(older)))), ErrorCode::FailedPrecondition);
    w.as_("node-1", replan(Some(old)));
    let after = w.state.runs["r1"].approval.clone().unwrap();
    assert_ne!(after.plan_digest, before.plan_digest, "the version is in the digest");
    w.decide("anna", "r1", true);
    w.decide("bob", "r1", true);
    assert_eq!(w.phase("r1"), RunPhase::Requested);
    // A configuration that no longer rotates the secret ends a waiting run.
    let spec = w.spec(1, &["role:approver"]);
    w.request("r2", spec, false);
    w.store_config(3);
    w.as_(
        "node-1",
        Command::ReplanRun {
            run_id: "r2".into(),
            spec: None,
            reason: "no variable prod/K_r2".into(),
        },
    );
    assert_eq!(w.phase("r2"), RunPhase::Expired);
    assert!(w.state.secrets["prod/K_r2"].active_run.is_none());
}

#[test]
fn expiry_and_denial_end_the_run_in_log_time() {
    let mut w = World::new();
    let spec = w.spec(1, &["role:approver"]);
    w.request("r1", spec.clone(), false);
    let early = w.as_("node-1", Command::ExpireApproval { run_id: "r1".into() });
    assert_eq!(refused(early), ErrorCode::FailedPrecondition, "not before its expiry");
    w.now += 60_000;
    assert_eq!(refused(w.decide("anna", "r1", true)), ErrorCode::FailedPrecondition, "expired");
    w.as_("node-1", Command::ExpireApproval { run_id: "r1".into() });
    assert_eq!(w.phase("r1"), RunPhase::Expired);
    assert!(w.state.secrets["prod/K_r1"].active_run.is_none());
    w.request("r2", spec, false);
    w.decide("bob", "r2", false);
    assert_eq!(w.phase("r2"), RunPhase::Denied);
    assert!(w.state.runs["r2"].last_error.contains("denied by bob"));
}

#[test]
fn break_glass_opens_a_review_that_another_operator_closes_and_that_goes_overdue() {
    let mut w = World::new();
    let spec = RunSpec { approval: None, ..w.spec(1, &[]) };
    w.request("r1", spec, true);
    assert_eq!(w.phase("r1"), RunPhase::Requested, "no approval");
    let (id, review) = w.state.reviews.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
    assert_eq!((review.opened_by.as_str(), review.run_id.as_str()), ("otto", "r1"));
    let overdue = Command::ReviewOverdue { review_id: id.clone() };
    assert_eq!(refused(w.as_("node-1", overdue.clone())), ErrorCode::FailedPrecondition);
    w.now += super::super::REVIEW_DEADLINE_MS;
    assert!(matches!(w.as_("node-1", overdue.clone()), Outcome::ReviewUpdated { .. }));
    assert_eq!(refused(w.as_("node-1", overdue)), ErrorCode::FailedPrecondition, "once");
    let close = |note: &str| Command::CloseReview { review_id: id.clone(), note: note.into() };
    assert_eq!(refused(w.as_("otto", close("mine"))), ErrorCode::PermissionDenied);
    assert_eq!(refused(w.as_("bob", close(" "))), ErrorCode::InvalidArgument);
    w.as_("bob", close("INC-7: right call"));
    assert_eq!(w.state.reviews[&id].closed_by.as_deref(), Some("bob"));
    assert_eq!(refused(w.as_("anna", close("again"))), ErrorCode::AlreadyExists);
    let actions: Vec<&str> = w.state.audit.recent().map(|e| e.action.as_str()).collect();
    for action in ["breakglass.used", "review.overdue", "review.closed"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
}
