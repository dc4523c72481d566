//! Tokens the admin API hands out: the shared helpers, and report tokens (read-only bearer
//! tokens for the reports API, scoped to environments; only their hash is stored).

use dsops_identity::JoinToken;
use dsops_proto::ErrorCode;
use dsops_proto::domain::{Permission, RequestId, timestamp_ms};
use dsops_proto::wire::admin as wire;
use dsops_state::{Command, ReportToken};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;

/// The shortest and longest life of a report token.
pub const REPORT_TOKEN_TTL_S: std::ops::RangeInclusive<u64> = 3600..=400 * 86_400;

impl AdminService {
    /// A new token and its expiry, `ttl` from now.
    pub(super) fn new_token(&self, ttl: std::time::Duration) -> (JoinToken, u64) {
        let token = JoinToken::generate(self.control.peer_fingerprint());
        (token, dsops_proto::now_ms() + ttl.as_millis() as u64)
    }

    pub(super) async fn create_report_token_impl(
        &self,
        request: Request<wire::CreateReportTokenRequest>,
    ) -> Result<Response<wire::CreateReportTokenResponse>, Status> {
        let caller = self.authorize(&request, Permission::Operators).await?;
        let r = request.into_inner();
        let request_id = RequestId::parse(&r.request_id, "request_id")?;
        if !REPORT_TOKEN_TTL_S.contains(&r.ttl_seconds) {
            return Err(
                ErrorCode::InvalidArgument.to_status("ttl: from 1 hour to 400 days".to_owned())
            );
        }
        let mut bytes = [0u8; 38];
        rand::rng().fill_bytes(&mut bytes);
        let id = format!("rt-{}", dsops_proto::hex(&bytes[..6]));
        let secret = dsops_proto::hex(&bytes[6..]);
        let expires_at_ms = dsops_proto::now_ms() + r.ttl_seconds * 1000;
        let token = ReportToken {
            id: id.clone(),
            name: r.name,
            token_hash: secret_hash(&secret),
            envs: r.envs,
            created_by: String::new(),
            created_at_ms: 0,
            expires_at_ms,
            revoked_at_ms: None,
        };
        let command = Command::CreateReportToken { token };
        let response = self
            .control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        shown_once(&response)?;
        Ok(Response::new(wire::CreateReportTokenResponse {
            id: id.clone(),
            token: format!("{id}.{secret}"),
            expires_at: Some(timestamp_ms(expires_at_ms)),
        }))
    }

    pub(super) async fn list_report_tokens_impl(
        &self,
        request: Request<wire::ListReportTokensRequest>,
    ) -> Result<Response<wire::ListReportTokensResponse>, Status> {
        self.authorize(&request, Permission::Operators).await?;
        let now = dsops_proto::now_ms();
        let tokens = self
            .control
            .read_local(|s| {
                s.report_tokens
                    .values()
                    .map(|t| wire::ReportTokenInfo {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        envs: t.envs.clone(),
                        created_by: t.created_by.clone(),
                        created_at: Some(timestamp_ms(t.created_at_ms)),
                        expires_at: Some(timestamp_ms(t.expires_at_ms)),
                        status: match (t.revoked_at_ms, now < t.expires_at_ms) {
                            (Some(_), _) => "revoked",
                            (None, true) => "live",
                            (None, false) => "expired",
                        }
                        .to_owned(),
                    })
                    .collect()
            })
            .await;
        Ok(Response::new(wire::ListReportTokensResponse { tokens }))
    }

    pub(super) async fn revoke_report_token_impl(
        &self,
        request: Request<wire::RevokeReportTokenRequest>,
    ) -> Result<Response<wire::RevokeReportTokenResponse>, Status> {
        let caller = self.authorize(&request, Permission::Operators).await?;
        let r = request.into_inner();
        let request_id = RequestId::parse(&r.request_id, "request_id")?;
        if r.id.len() > 64 {
            return Err(ErrorCode::InvalidArgument.to_status("id: at most 64 characters"));
        }
        let command = Command::RevokeReportToken { id: r.id };
        self.control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(wire::RevokeReportTokenResponse {}))
    }
}

/// Hex SHA-256 of a report token's secret part, as stored.
pub fn secret_hash(secret: &str) -> String {
    dsops_proto::hex(&Sha256::digest(secret.as_bytes()))
}

/// A retried token request cannot be answered: the first attempt created a token whose secret
/// only that attempt knew.
pub(super) fn shown_once(response: &dsops_state::Response) -> Result<(), Status> {
    if response.duplicate {
        return Err(ErrorCode::FailedPrecondition.to_status(
            "this request already created a token, which cannot be shown again; ask for a new token",
        ));
    }
    Ok(())
}
