//! The admin calls that manage operators: roles (`GrantRole`, `UngrantRole`), the list, and the
//! life of an operator's certificate — invitation, enrolment, renewal, revocation.
//!
//! An invitation is a one-time token (`DSO1.<peer CA fingerprint>.<secret>`) an admin creates
//! with the roles the new operator will hold. Its holder calls `EnrollOperator` without a
//! certificate (pinning the cluster's CA from the token), sends a CSR for a key it generated,
//! and gets a certificate from the operator CA naming it. Like joining, the token is checked
//! before anything costs a signature or a raft write.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{
    EnrollOperator, GrantRole, InviteOperator, Permission, RenewOperator, RevokeOperator,
    RoleGrant, timestamp_ms,
};
use dsops_proto::wire::admin as wire;
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;
use super::admin_tokens::shown_once;
use crate::control::WriteError;
use dsops_identity::JoinToken;
use dsops_state::{Command, Outcome};

const MS_PER_DAY: u64 = 24 * 3600 * 1000;

impl AdminService {
    /// The leader, holding the operator CA key, or why not.
    fn operator_issuer(&self) -> Result<(), Status> {
        let control = &self.control;
        if !control.is_leader() {
            return Err(
                WriteError::NotLeader { leader: control.leader().map(|(_, a)| a) }.to_status()
            );
        }
        if control.pki().operator.is_none() {
            return Err(ErrorCode::Unavailable.to_status(
                "the leader does not hold the operator CA key yet (a voter receives it from the \
                 leader that has it); retry in a minute",
            ));
        }
        Ok(())
    }

    /// Signs `csr_pem` for operator `name` until `not_after_ms`.
    fn sign_operator(
        &self,
        csr_pem: &str,
        name: &str,
        not_after_ms: u64,
    ) -> Result<wire::EnrollOperatorResponse, Status> {
        let pki = self.control.pki();
        let certificate_pem = pki
            .sign_operator_csr(csr_pem, name, not_after_ms)
            .map_err(|e| ErrorCode::InvalidArgument.to_status(format!("csr_pem: {e}")))?;
        Ok(wire::EnrollOperatorResponse {
            name: name.to_owned(),
            certificate_pem,
            ca_pem: pki.peer.cert_pem.clone(),
            not_after: Some(timestamp_ms(not_after_ms)),
        })
    }

    /// `GrantRole` (`granted`) or `UngrantRole`.
    pub(super) async fn set_role(
        &self,
        request: Request<wire::GrantRoleRequest>,
        granted: bool,
    ) -> Result<Response<wire::GrantRoleResponse>, Status> {
        let caller = self.authorize(&request, Permission::Operators).await?;
        let GrantRole { request_id, operator, grant } = GrantRole::try_from(request.into_inner())?;
        let command = Command::SetRole { operator, grant, granted };
        let response = self
            .control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        match response.outcome {
            Outcome::RolesChanged { grants, .. } => Ok(Response::new(wire::GrantRoleResponse {
                grants: grants.iter().map(RoleGrant::to_wire).collect(),
            })),
            other => Err(ErrorCode::Internal.to_status(format!("unexpected outcome {other:?}"))),
        }
    }

    /// `ListOperators`: every operator with roles, certificate expiry and when this node last
    /// served it.
    pub(super) async fn list_operators_impl(
        &self,
        request: Request<wire::ListOperatorsRequest>,
    ) -> Result<Response<wire::ListOperatorsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let control = &self.control;
        let operators = control
            .read_current(|state| {
                state
                    .operators
                    .iter()
                    .map(|(name, record)| wire::OperatorInfo {
                        name: name.clone(),
                        grants: record.grants.iter().map(RoleGrant::to_wire).collect(),
                        added_at: Some(timestamp_ms(record.added_at_ms)),
                        added_by: record.added_by.clone(),
                        certificate_not_after: record.cert_not_after_ms.map(timestamp_ms),
                        last_seen: control.operator_last_seen(name).map(timestamp_ms),
                        revoked: record.revoked_at_ms.is_some(),
                    })
                    .collect()
            })
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(wire::ListOperatorsResponse { operators }))
    }

    /// `InviteOperator` (admin).
    pub(super) async fn invite_operator_impl(
        &self,
        request: Request<wire::InviteOperatorRequest>,
    ) -> Result<Response<wire::InviteOperatorResponse>, Status> {
        let caller = self.authorize(&request, Permission::Operators).await?;
        let invite = InviteOperator::try_from(request.into_inner())?;
        let (token, expires_at_ms) = self.new_token(invite.ttl);
        let command = Command::InviteOperator {
            token_hash: JoinToken::secret_hash(&token.secret),
            name: invite.name.clone(),
            grants: invite.grants,
            expires_at_ms,
            certificate_days: invite.certificate_days,
        };
        let response = self
            .control
            .write(&caller.name, invite.request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        shown_once(&response)?;
        tracing::info!(operator = %invite.name, by = %caller.name, "operator invited");
        Ok(Response::new(wire::InviteOperatorResponse {
            token: token.encode_operator(),
            expires_at: Some(timestamp_ms(expires_at_ms)),
        }))
    }

    /// `EnrollOperator`: no certificate; the invitation is the credential.
    pub(super) async fn enroll_operator_impl(
        &self,
        request: Request<wire::EnrollOperatorRequest>,
    ) -> Result<Response<wire::EnrollOperatorResponse>, Status> {
        let EnrollOperator { token_secret, csr_pem } =
            EnrollOperator::try_from(request.into_inner())?;
        self.operator_issuer()?;
        let control = &self.control;
        let hash = JoinToken::secret_hash(&token_secret);
        let request_id = JoinToken::secret_hash(&format!("{hash}\n{csr_pem}"));
        let request_id = format!("enroll-op-{}", &request_id[..48]);
        let now = dsops_proto::now_ms();
        // The invitation first: anyone can call this, so an unknown one costs neither a
        // signature nor a raft write. The same caller retrying after a lost answer is answered
        // again from what its first attempt recorded.
        let invited = control
            .read_local(|state| {
                if state.dedup.get(&request_id).is_some() {
                    return Ok(None);
                }
                match state.operator_invites.get(&hash) {
                    None => Err("unknown or already used operator invitation"),
                    Some(invite) if invite.expires_at_ms <= now => {
                        Err("the operator invitation has expired")
                    }
                    Some(invite) => Ok(Some((invite.name.clone(), invite.certificate_days))),
                }
            })
            .await
            .map_err(|refusal| ErrorCode::PermissionDenied.to_status(refusal))?;
        let not_after_ms = match &invited {
            Some((name, days)) => {
                // The CSR must make a certificate before the invitation is spent.
                self.sign_operator(&csr_pem, name, now + MS_PER_DAY)?;
                now + u64::from(*days) * MS_PER_DAY
            }
            None => 0,
        };
        let actor = invited.as_ref().map_or("an enrolling operator", |(name, _)| name.as_str());
        let command = Command::EnrollOperator { token_hash: hash, cert_not_after_ms: not_after_ms };
        let response =
            control.write(actor, &request_id, command).await.map_err(|e| e.to_status())?;
        let Outcome::OperatorEnrolled { name, .. } = response.outcome else {
            return Err(ErrorCode::Internal.to_status("unexpected outcome of an enrolment"));
        };
        // A retry signs again, until the expiry the first attempt recorded.
        let not_after_ms = control
            .read_local(|state| state.operators.get(&name).and_then(|o| o.cert_not_after_ms))
            .await
            .unwrap_or(not_after_ms);
        let answer = self.sign_operator(&csr_pem, &name, not_after_ms)?;
        tracing::info!(operator = %name, "operator enrolled");
        Ok(Response::new(answer))
    }

    /// `RenewOperator`: a new certificate for the caller's new key, for the default lifetime.
    pub(super) async fn renew_operator_impl(
        &self,
        request: Request<wire::RenewOperatorRequest>,
    ) -> Result<Response<wire::EnrollOperatorResponse>, Status> {
        let caller = self.operator(&request).await?;
        let RenewOperator { request_id, csr_pem } = RenewOperator::try_from(request.into_inner())?;
        self.operator_issuer()?;
        let now = dsops_proto::now_ms();
        self.sign_operator(&csr_pem, &caller.name, now + MS_PER_DAY)?;
        let not_after_ms =
            now + u64::from(dsops_proto::domain::DEFAULT_OPERATOR_CERT_DAYS) * MS_PER_DAY;
        let command = Command::RenewOperatorCertificate {
            name: caller.name.clone(),
            cert_not_after_ms: not_after_ms,
        };
        self.control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        let not_after_ms = self
            .control
            .read_local(|state| state.operators.get(&caller.name).and_then(|o| o.cert_not_after_ms))
            .await
            .unwrap_or(not_after_ms);
        Ok(Response::new(self.sign_operator(&csr_pem, &caller.name, not_after_ms)?))
    }

    /// `RevokeOperator` (admin): its roles go, its certificates are refused on every node.
    pub(super) async fn revoke_operator_impl(
        &self,
        request: Request<wire::RevokeOperatorRequest>,
    ) -> Result<Response<wire::RevokeOperatorResponse>, Status> {
        let caller = self.authorize(&request, Permission::Operators).await?;
        let RevokeOperator { request_id, name, reason } =
            RevokeOperator::try_from(request.into_inner())?;
        let reason = if reason.is_empty() { format!("revoked by {}", caller.name) } else { reason };
        let command = Command::RevokeOperator { name: name.clone(), reason };
        let response = self
            .control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        match response.outcome {
            Outcome::RolesChanged { grants, .. } => {
                tracing::info!(operator = %name, by = %caller.name, "operator revoked");
                Ok(Response::new(wire::RevokeOperatorResponse {
                    grants: grants.iter().map(RoleGrant::to_wire).collect(),
                }))
            }
            other => Err(ErrorCode::Internal.to_status(format!("unexpected outcome {other:?}"))),
        }
    }
}
