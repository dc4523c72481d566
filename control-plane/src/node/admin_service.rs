//! The `Admin` gRPC service: what the CLI calls. Every handler authenticates the caller from its
//! certificate, converts the request, writes through raft (or reads linearizably), and maps the
//! result to a status; a follower answers `not_leader` with the leader's address.

use super::admin_tokens::shown_once;
use dsops_proto::ErrorCode;
use dsops_proto::domain::{
    ApplyConfig, CreateAgentToken, CreateJoinToken, GetRuns, MemberRole, Permission, RemoveNode,
    RevokeAgent, Rollback, RotationHistory, RotationStatus,
};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use openraft::{ChangeMembers, ServerState};
use tonic::{Request, Response, Status};

use crate::control::{ControlPlane, WriteError};
use crate::pki::{CallerIdentity, Role, caller_of};
use dsops_identity::JoinToken;
use dsops_state::{Command, Outcome};

/// Serves `Admin`.
#[derive(Debug, Clone)]
pub struct AdminService {
    pub(super) control: ControlPlane,
}

impl AdminService {
    /// An admin service for `control`.
    pub fn new(control: ControlPlane) -> AdminService {
        AdminService { control }
    }

    /// The operator making the request, if its roles permit `permission`.
    pub(super) async fn authorize<T>(
        &self,
        request: &Request<T>,
        permission: Permission,
    ) -> Result<CallerIdentity, Status> {
        let caller = self.operator(request).await?;
        self.allow(&caller, permission).await?;
        Ok(caller)
    }

    /// Refuses `caller` (`permission_denied`, naming the operator, the permission and the roles
    /// it holds; counted for the audit log's refusal summary) unless its roles permit it.
    pub(super) async fn allow(
        &self,
        caller: &CallerIdentity,
        permission: Permission,
    ) -> Result<(), Status> {
        // The embedded default's one local operator holds every right there.
        if caller.local {
            return Ok(());
        }
        let verdict = self
            .control
            .read_local(|state| state.operator_permits(&caller.name, &permission))
            .await;
        verdict.map_err(|why| {
            self.control.refusals().count(
                "permission.denied",
                &format!("operator {}", caller.name),
                &permission.to_string(),
                None,
                None,
            );
            ErrorCode::PermissionDenied.to_status(why)
        })
    }

    /// The operator making the request: an operator certificate that has not expired (an
    /// HTTP/2 connection outlives the handshake that checked it) and is not revoked.
    pub(super) async fn operator<T>(&self, request: &Request<T>) -> Result<CallerIdentity, Status> {
        let identity = caller_of(
            request,
            Role::Operator,
            "use the admin API",
            "an operator certificate is required (see --credentials)",
        )?;
        if let Some(refusal) = super::admin_gate::operator_refusal(&self.control, &identity).await {
            return Err(refusal);
        }
        self.control.operator_seen(&identity.name);
        Ok(identity)
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn apply_config(
        &self,
        request: Request<wire::ApplyConfigRequest>,
    ) -> Result<Response<wire::ApplyConfigResponse>, Status> {
        let caller = self.authorize(&request, Permission::Configure).await?;
        let apply = ApplyConfig::try_from(request.into_inner())?;
        // Validate here too: the server never stores a configuration it would refuse to load.
        let (apply, fingerprints) = super::config_upload::validate(&self.control, apply).await?;
        let command = Command::StoreConfig {
            config_yaml: apply.config_yaml,
            config_path: apply.config_path,
            catalog_files: apply.catalog_files,
            fingerprints,
            expected_version: apply.expected_version,
            history_bytes: Some(dsops_state::CONFIG_HISTORY_BYTES),
        };
        let id = apply.request_id.as_str();
        let response = super::config_upload::write_config(&self.control, &caller.name, id, command)
            .await
            .map_err(|e| e.to_status())?;
        match response.outcome {
            Outcome::ConfigStored { version, previous_version, changes } => {
                Ok(Response::new(wire::ApplyConfigResponse {
                    version,
                    previous_version,
                    changes: changes
                        .into_iter()
                        .map(|c| wire::ConfigChange { action: c.action, path: c.path })
                        .collect(),
                }))
            }
            other => Err(ErrorCode::Internal.to_status(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn get_config(
        &self,
        request: Request<wire::GetConfigRequest>,
    ) -> Result<Response<wire::GetConfigResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let stored = self
            .control
            .read_current(|state| state.current_config().cloned())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(match stored {
            Some(config) => wire::GetConfigResponse {
                version: config.version,
                config_yaml: config.config_yaml,
                applied_at: Some(dsops_proto::domain::timestamp_ms(config.applied_at_ms)),
                applied_by: config.applied_by,
            },
            None => wire::GetConfigResponse::default(),
        }))
    }

    async fn cluster_status(
        &self,
        request: Request<wire::ClusterStatusRequest>,
    ) -> Result<Response<wire::ClusterStatusResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let metrics = self.control.metrics();
        // Follower lag is known only to the leader: send the caller there when there is one.
        if metrics.state != ServerState::Leader
            && let Some((_, address)) = self.control.leader()
        {
            return Err(WriteError::NotLeader { leader: Some(address) }.to_status());
        }
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if metrics.current_leader == Some(*id) {
                    MemberRole::Leader
                } else if voters.contains(id) {
                    MemberRole::Follower
                } else {
                    MemberRole::Learner
                };
                let matched = if Some(*id) == metrics.current_leader {
                    Some(last)
                } else {
                    replication.get(id).copied().flatten().map(|l| l.index)
                };
                wire::Member {
                    id: *id,
                    address: node.addr.clone(),
                    role: role.to_wire(),
                    matched_index: matched.unwrap_or(0),
                    lag: matched.map_or(last, |m| last.saturating_sub(m)),
                }
            })
            .collect();
        Ok(Response::new(wire::ClusterStatusResponse {
            leader_id: metrics.current_leader.unwrap_or(0),
            term: metrics.current_term,
            last_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            members,
        }))
    }

    async fn create_join_token(
        &self,
        request: Request<wire::CreateJoinTokenRequest>,
    ) -> Result<Response<wire::CreateJoinTokenResponse>, Status> {
        let caller = self.authorize(&request, Permission::Cluster).await?;
        let request = CreateJoinToken::try_from(request.into_inner())?;
        let (token, expires_at_ms) = self.new_token(request.ttl);
        let id = request.request_id.as_str();
        let command = Command::CreateJoinToken {
            token_hash: JoinToken::secret_hash(&token.secret),
            expires_at_ms,
        };
        let response =
            self.control.write(&caller.name, id, command).await.map_err(|e| e.to_status())?;
        shown_once(&response)?;
        Ok(Response::new(wire::CreateJoinTokenResponse {
            token: token.encode(),
            expires_at: Some(dsops_proto::domain::timestamp_ms(expires_at_ms)),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<wire::RemoveNodeRequest>,
    ) -> Result<Response<wire::RemoveNodeResponse>, Status> {
        let caller = self.authorize(&request, Permission::Cluster).await?;
        let RemoveNode { request_id, node_id } = RemoveNode::try_from(request.into_inner())?;
        let id = request_id.as_str();
        let control = &self.control;
        if !control.is_leader() {
            return Err(
                WriteError::NotLeader { leader: control.leader().map(|(_, a)| a) }.to_status()
            );
        }
        // Each step is skipped when already done, so a retry (after a failover, or when the
        // leader removed itself) finishes the job instead of failing.
        let membership = control.metrics().membership_config.membership().clone();
        let recorded = control.read_local(|state| state.nodes.contains_key(&node_id)).await;
        if membership.get_node(&node_id).is_none() && !recorded {
            return Err(ErrorCode::NotFound.to_status(format!("node {node_id} is not a member")));
        }
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        if voters.contains(&node_id) {
            if voters.len() == 1 {
                return Err(ErrorCode::FailedPrecondition.to_status("cannot remove the last voter"));
            }
            super::promote::change_membership(
                control,
                ChangeMembers::RemoveVoters([node_id].into()),
            )
            .await?;
        }
        if control.metrics().membership_config.membership().get_node(&node_id).is_some() {
            super::promote::change_membership(
                control,
                ChangeMembers::RemoveNodes([node_id].into()),
            )
            .await?;
        }
        match control.write(&caller.name, id, Command::ForgetNode { node_id }).await {
            Ok(_) | Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_status()),
        }
        // Its certificate is refused from now on. It still holds the issuing CA keys it had as
        // a voter: see docs/operations.md (re-keying) when the node cannot be trusted.
        let revoke = Command::RevokeIdentity {
            role: "peer".to_owned(),
            name: format!("node-{node_id}"),
            reason: format!("node {node_id} was removed from the cluster"),
        };
        match control.write(&caller.name, &format!("{id}-revoke"), revoke).await {
            Ok(_) | Err(WriteError::Rejected { .. }) => {}
            Err(error) => return Err(error.to_status()),
        }
        let voter_ids = control.metrics().membership_config.membership().voter_ids().collect();
        Ok(Response::new(wire::RemoveNodeResponse { voter_ids }))
    }

    async fn rotate(
        &self,
        request: Request<wire::RotateRequest>,
    ) -> Result<Response<wire::RotateResponse>, Status> {
        let caller = self.operator(&request).await?;
        let request = dsops_proto::domain::RotateRequest::try_from(request.into_inner())?;
        let env = match &request.selector {
            dsops_proto::domain::RotateSelector::Secret(secret) => Some(secret.env.clone()),
            dsops_proto::domain::RotateSelector::AllDueInEnv(env) => Some(env.clone()),
            dsops_proto::domain::RotateSelector::ServicePolicy { .. } => None,
        };
        if request.break_glass {
            let env = env.clone().unwrap_or_default();
            self.allow(&caller, Permission::BreakGlass { env }).await?;
        } else {
            self.allow(&caller, Permission::Rotate { env }).await?;
        }
        let response = crate::rotation::start::rotate(
            &self.control,
            &caller.name,
            caller.local,
            request,
            false,
        )
        .await?;
        Ok(Response::new(response))
    }

    async fn rotation_status(
        &self,
        request: Request<wire::RotationStatusRequest>,
    ) -> Result<Response<wire::RotationStatusResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let request = RotationStatus::try_from(request.into_inner())?;
        Ok(Response::new(crate::rotation::report::status(&self.control, &request).await?))
    }

    async fn rotation_history(
        &self,
        request: Request<wire::RotationHistoryRequest>,
    ) -> Result<Response<wire::RotationHistoryResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let RotationHistory { secret, limit } = RotationHistory::try_from(request.into_inner())?;
        let history =
            crate::rotation::report::history(&self.control, &secret.env, &secret.key, limit)
                .await?;
        Ok(Response::new(history))
    }

    async fn rollback(
        &self,
        request: Request<wire::RollbackRequest>,
    ) -> Result<Response<wire::RotateResponse>, Status> {
        let caller = self.operator(&request).await?;
        let Rollback { request_id, secret } = Rollback::try_from(request.into_inner())?;
        self.allow(&caller, Permission::Rotate { env: Some(secret.env.clone()) }).await?;
        let rotate = dsops_proto::domain::RotateRequest::try_from(wire::RotateRequest {
            request_id: request_id.as_str().to_owned(),
            selector: Some(wire::rotate_request::Selector::Secret((&secret).into())),
            force: true,
            dry_run: false,
            reason: String::new(),
            only: Vec::new(),
            break_glass: false,
        })?;
        let response =
            crate::rotation::start::rotate(&self.control, &caller.name, caller.local, rotate, true)
                .await?;
        Ok(Response::new(response))
    }

    async fn get_runs(
        &self,
        request: Request<wire::GetRunsRequest>,
    ) -> Result<Response<wire::GetRunsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let GetRuns { run_ids, with_steps } = GetRuns::try_from(request.into_inner())?;
        let runs = crate::rotation::report::get_runs(&self.control, &run_ids, with_steps).await?;
        Ok(Response::new(runs))
    }

    async fn create_agent_token(
        &self,
        request: Request<wire::CreateAgentTokenRequest>,
    ) -> Result<Response<wire::CreateAgentTokenResponse>, Status> {
        let caller = self.authorize(&request, Permission::Agents).await?;
        let request = CreateAgentToken::try_from(request.into_inner())?;
        let (token, expires_at_ms) = self.new_token(request.ttl);
        let command = Command::CreateAgentToken {
            token_hash: JoinToken::secret_hash(&token.secret),
            segment: request.segment.as_str().to_owned(),
            expires_at_ms,
        };
        let id = request.request_id.as_str();
        let response =
            self.control.write(&caller.name, id, command).await.map_err(|e| e.to_status())?;
        shown_once(&response)?;
        Ok(Response::new(wire::CreateAgentTokenResponse {
            token: token.encode_agent(),
            expires_at: Some(dsops_proto::domain::timestamp_ms(expires_at_ms)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<wire::ListAgentsRequest>,
    ) -> Result<Response<wire::ListAgentsResponse>, Status> {
        self.list_agents_impl(request).await
    }

    async fn revoke_agent(
        &self,
        request: Request<wire::RevokeAgentRequest>,
    ) -> Result<Response<wire::RevokeAgentResponse>, Status> {
        let caller = self.authorize(&request, Permission::Agents).await?;
        let RevokeAgent { request_id, agent_id } = RevokeAgent::try_from(request.into_inner())?;
        let agent_id = agent_id.as_str().to_owned();
        let command = Command::RevokeAgent { agent_id: agent_id.clone() };
        let id = request_id.as_str();
        // Sessions live on the leader, which commits the write here: applying it notices the
        // session, which may end before the close below; either way it was closed.
        let had_session = self.control.agents().session_of(&agent_id).is_some();
        self.control.write(&caller.name, id, command).await.map_err(|e| e.to_status())?;
        let closed = self.control.agents().close(&agent_id) || had_session;
        tracing::info!(%agent_id, by = %caller.name, "agent revoked");
        Ok(Response::new(wire::RevokeAgentResponse { sessions_closed: u32::from(closed) }))
    }

    async fn grant_role(
        &self,
        request: Request<wire::GrantRoleRequest>,
    ) -> Result<Response<wire::GrantRoleResponse>, Status> {
        self.set_role(request, true).await
    }

    async fn ungrant_role(
        &self,
        request: Request<wire::GrantRoleRequest>,
    ) -> Result<Response<wire::GrantRoleResponse>, Status> {
        self.set_role(request, false).await
    }

    async fn list_operators(
        &self,
        request: Request<wire::ListOperatorsRequest>,
    ) -> Result<Response<wire::ListOperatorsResponse>, Status> {
        self.list_operators_impl(request).await
    }

    async fn invite_operator(
        &self,
        request: Request<wire::InviteOperatorRequest>,
    ) -> Result<Response<wire::InviteOperatorResponse>, Status> {
        self.invite_operator_impl(request).await
    }

    async fn enroll_operator(
        &self,
        request: Request<wire::EnrollOperatorRequest>,
    ) -> Result<Response<wire::EnrollOperatorResponse>, Status> {
        self.enroll_operator_impl(request).await
    }

    async fn renew_operator(
        &self,
        request: Request<wire::RenewOperatorRequest>,
    ) -> Result<Response<wire::EnrollOperatorResponse>, Status> {
        self.renew_operator_impl(request).await
    }

    async fn revoke_operator(
        &self,
        request: Request<wire::RevokeOperatorRequest>,
    ) -> Result<Response<wire::RevokeOperatorResponse>, Status> {
        self.revoke_operator_impl(request).await
    }

    async fn list_approvals(
        &self,
        request: Request<wire::ListApprovalsRequest>,
    ) -> Result<Response<wire::ListApprovalsResponse>, Status> {
        self.list_approvals_impl(request).await
    }

    async fn decide(
        &self,
        request: Request<wire::DecideRequest>,
    ) -> Result<Response<wire::DecideResponse>, Status> {
        self.decide_impl(request).await
    }

    async fn list_reviews(
        &self,
        request: Request<wire::ListReviewsRequest>,
    ) -> Result<Response<wire::ListReviewsResponse>, Status> {
        self.list_reviews_impl(request).await
    }

    async fn close_review(
        &self,
        request: Request<wire::CloseReviewRequest>,
    ) -> Result<Response<wire::CloseReviewResponse>, Status> {
        self.close_review_impl(request).await
    }

    async fn list_audit(
        &self,
        request: Request<wire::ListAuditRequest>,
    ) -> Result<Response<wire::ListAuditResponse>, Status> {
        self.list_audit_impl(request).await
    }

    async fn list_notifications(
        &self,
        request: Request<wire::ListNotificationsRequest>,
    ) -> Result<Response<wire::ListNotificationsResponse>, Status> {
        self.list_notifications_impl(request).await
    }

    type ExportEvidenceStream = super::admin_evidence::ChunkStream;

    async fn export_evidence(
        &self,
        request: Request<wire::ExportEvidenceRequest>,
    ) -> Result<Response<Self::ExportEvidenceStream>, Status> {
        self.export_evidence_impl(request).await
    }

    async fn compliance_report(
        &self,
        request: Request<wire::ComplianceReportRequest>,
    ) -> Result<Response<wire::ComplianceReportResponse>, Status> {
        self.compliance_report_impl(request).await
    }

    async fn get_metrics(
        &self,
        request: Request<wire::GetMetricsRequest>,
    ) -> Result<Response<wire::GetMetricsResponse>, Status> {
        self.get_metrics_impl(request).await
    }

    async fn create_report_token(
        &self,
        request: Request<wire::CreateReportTokenRequest>,
    ) -> Result<Response<wire::CreateReportTokenResponse>, Status> {
        self.create_report_token_impl(request).await
    }

    async fn list_report_tokens(
        &self,
        request: Request<wire::ListReportTokensRequest>,
    ) -> Result<Response<wire::ListReportTokensResponse>, Status> {
        self.list_report_tokens_impl(request).await
    }

    async fn revoke_report_token(
        &self,
        request: Request<wire::RevokeReportTokenRequest>,
    ) -> Result<Response<wire::RevokeReportTokenResponse>, Status> {
        self.revoke_report_token_impl(request).await
    }

    async fn preflight(
        &self,
        request: Request<wire::PreflightRequest>,
    ) -> Result<Response<wire::PreflightResponse>, Status> {
        self.preflight_impl(request).await
    }

    async fn rotate_evidence_key(
        &self,
        request: Request<wire::RotateEvidenceKeyRequest>,
    ) -> Result<Response<wire::RotateEvidenceKeyResponse>, Status> {
        self.rotate_evidence_key_impl(request).await
    }

    async fn promotion_status(
        &self,
        request: Request<wire::PromotionStatusRequest>,
    ) -> Result<Response<wire::PromotionStatusResponse>, Status> {
        self.promotion_status_impl(request).await
    }

    async fn halt_promotion(
        &self,
        request: Request<wire::HaltPromotionRequest>,
    ) -> Result<Response<wire::HaltPromotionResponse>, Status> {
        self.halt_impl(request, false).await
    }

    async fn resume_promotion(
        &self,
        request: Request<wire::HaltPromotionRequest>,
    ) -> Result<Response<wire::HaltPromotionResponse>, Status> {
        self.halt_impl(request, true).await
    }
}
