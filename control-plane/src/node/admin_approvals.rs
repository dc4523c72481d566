//! The admin calls of approvals: the runs waiting for one, an operator's signed decision, and
//! the reviews breaking glass opens.
//!
//! A decision is signed by the CLI with the operator's key over
//! [`dsops_proto::domain::decision_bytes`] (run, round, plan digest, decision, time, reason).
//! The leader verifies the signature against the certificate of the connection the decision
//! came on — the caller's own — before it proposes anything, and the state machine keeps the
//! decision with that certificate, so an auditor can check it offline. Someone else's signed
//! decision sent over another operator's connection does not verify; a decision for another
//! run, round or plan does not match; the same one twice counts once.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{Decide, Permission, decision_bytes};
use dsops_proto::wire::admin as wire;
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;
use crate::control::WriteError;
use crate::pki::ConnInfo;
use crate::rotation::start::summary;
use dsops_state::{ApprovalDecision, Command, RunPhase};

/// How far a decision's signing time may be from the leader's clock.
const MAX_SKEW_MS: u64 = 10 * 60 * 1000;

impl AdminService {
    /// `ListApprovals` (viewer): runs awaiting approval, oldest first.
    pub(super) async fn list_approvals_impl(
        &self,
        request: Request<wire::ListApprovalsRequest>,
    ) -> Result<Response<wire::ListApprovalsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let env = request.into_inner().env;
        let control = &self.control;
        let mut runs: Vec<(u64, wire::RunSummary)> = control
            .read_current(|state| {
                state
                    .active_runs
                    .iter()
                    .filter_map(|id| state.runs.get(id))
                    .filter(|run| run.phase == RunPhase::AwaitingApproval)
                    .filter(|run| env.is_empty() || run.env == env)
                    .map(|run| (run.requested_at_ms, summary(run, control, false)))
                    .collect()
            })
            .await
            .map_err(|e| e.to_status())?;
        runs.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.run_id.cmp(&b.1.run_id)));
        Ok(Response::new(wire::ListApprovalsResponse {
            runs: runs.into_iter().map(|(_, run)| run).collect(),
        }))
    }

    /// `Decide` (approver of the run's environment): verifies the signature, then proposes.
    pub(super) async fn decide_impl(
        &self,
        request: Request<wire::DecideRequest>,
    ) -> Result<Response<wire::DecideResponse>, Status> {
        let caller = self.operator(&request).await?;
        let certificate = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|info| info.certs.first())
            .map(|der| dsops_identity::certificate_pem(der))
            .ok_or_else(|| {
                ErrorCode::Unauthenticated
                    .to_status("a decision is signed with an operator certificate's key")
            })?;
        let decide = Decide::try_from(request.into_inner())?;
        let control = &self.control;
        if !control.is_leader() {
            return Err(
                WriteError::NotLeader { leader: control.leader().map(|(_, a)| a) }.to_status()
            );
        }
        let run_id = decide.run_id.as_str().to_owned();
        let env = control
            .read_local(|state| state.runs.get(&run_id).map(|run| run.env.clone()))
            .await
            .ok_or_else(|| ErrorCode::NotFound.to_status(format!("no run {run_id}")))?;
        self.allow(&caller, Permission::Approve { env }).await?;
        let now = control.now_ms();
        if decide.signed_at_ms.abs_diff(now) > MAX_SKEW_MS {
            return Err(ErrorCode::InvalidArgument.to_status(format!(
                "the decision was signed at {} ms, more than 10 minutes from the cluster's clock ({now} ms)",
                decide.signed_at_ms
            )));
        }
        let bytes = decision_bytes(
            &run_id,
            decide.round,
            &decide.plan_digest,
            decide.approve,
            decide.signed_at_ms,
            &decide.reason,
        );
        if let Err(error) = dsops_identity::verify_message(&certificate, &bytes, &decide.signature)
        {
            control.refusals().count(
                "approval.bad_signature",
                &format!("operator {}", caller.name),
                &format!("run {run_id}"),
                None,
                None,
            );
            return Err(ErrorCode::PermissionDenied.to_status(format!(
                "the decision on run {run_id} is not signed by the key of operator {}'s certificate: {error}",
                caller.name
            )));
        }
        let decision = ApprovalDecision {
            operator: caller.name.clone(),
            approve: decide.approve,
            reason: decide.reason,
            round: decide.round,
            plan_digest: decide.plan_digest,
            signed_at_ms: decide.signed_at_ms,
            recorded_at_ms: 0,
            signature_hex: dsops_proto::hex(&decide.signature),
            certificate_pem: certificate,
        };
        let command = Command::DecideApproval { run_id: run_id.clone(), decision };
        control
            .write(&caller.name, decide.request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        control.agents().wake();
        let run = control
            .read_local(|state| state.runs.get(&run_id).map(|run| summary(run, control, true)))
            .await;
        Ok(Response::new(wire::DecideResponse { run }))
    }

    /// `ListReviews` (viewer): open reviews (and, with `all`, the kept closed ones), oldest first.
    pub(super) async fn list_reviews_impl(
        &self,
        request: Request<wire::ListReviewsRequest>,
    ) -> Result<Response<wire::ListReviewsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let all = request.into_inner().all;
        let mut reviews: Vec<(u64, wire::Review)> = self
            .control
            .read_current(|state| {
                state
                    .reviews
                    .values()
                    .filter(|r| all || r.closed_by.is_none())
                    .map(|r| (r.opened_at_ms, review_wire(r)))
                    .collect()
            })
            .await
            .map_err(|e| e.to_status())?;
        reviews.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(Response::new(wire::ListReviewsResponse {
            reviews: reviews.into_iter().map(|(_, r)| r).collect(),
        }))
    }

    /// `CloseReview`: an approver of the review's environment other than who broke glass.
    pub(super) async fn close_review_impl(
        &self,
        request: Request<wire::CloseReviewRequest>,
    ) -> Result<Response<wire::CloseReviewResponse>, Status> {
        let caller = self.operator(&request).await?;
        let wire::CloseReviewRequest { request_id, review_id, note } = request.into_inner();
        let request_id = dsops_proto::domain::RequestId::parse(&request_id, "request_id")?;
        if note.trim().is_empty() || note.len() > dsops_proto::domain::MAX_REASON {
            return Err(ErrorCode::InvalidArgument
                .to_status("note: what the review found, 1 byte to 1 KiB"));
        }
        let control = &self.control;
        let env = control
            .read_local(|state| state.reviews.get(&review_id).map(|r| r.env.clone()))
            .await
            .ok_or_else(|| ErrorCode::NotFound.to_status(format!("no review {review_id:?}")))?;
        self.allow(&caller, Permission::Approve { env }).await?;
        let command = Command::CloseReview { review_id: review_id.clone(), note };
        control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        let review =
            control.read_local(|state| state.reviews.get(&review_id).map(review_wire)).await;
        Ok(Response::new(wire::CloseReviewResponse { review }))
    }
}

/// A review for the API.
fn review_wire(review: &dsops_state::Review) -> wire::Review {
    use dsops_proto::domain::timestamp_ms;
    wire::Review {
        id: review.id.clone(),
        run_id: review.run_id.clone(),
        secret: Some(wire::SecretKey { env: review.env.clone(), key: review.key.clone() }),
        opened_by: review.opened_by.clone(),
        reason: review.reason.clone(),
        opened_at: Some(timestamp_ms(review.opened_at_ms)),
        deadline: Some(timestamp_ms(review.deadline_ms)),
        overdue: review.closed_by.is_none() && review.overdue_at_ms.is_some(),
        closed_by: review.closed_by.clone().unwrap_or_default(),
        closed_at: review.closed_at_ms.map(timestamp_ms),
        note: review.note.clone(),
    }
}
