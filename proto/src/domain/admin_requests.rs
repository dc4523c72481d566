//! The remaining admin API requests as domain types: tokens, node removal, agent revocation,
//! run lookups, status, history and rollback. Each conversion destructures the wire request, so
//! a new field is a compile error here until it is validated.

use std::time::Duration;

use super::{AgentId, ProtocolError, RequestId, RunId, SecretKey, SegmentName};
use crate::wire::admin as wire;

/// How long a join or enrolment token lives when the request does not say.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The shortest and longest token lifetimes accepted.
pub const TOKEN_TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 24 * 3600));
/// The most runs one `GetRuns` asks for.
pub const MAX_RUN_IDS: usize = 10_000;
/// The most runs one history request returns.
pub const MAX_HISTORY: usize = 1000;

fn token_ttl(ttl_seconds: u64) -> Result<Duration, ProtocolError> {
    let ttl = if ttl_seconds == 0 { DEFAULT_TOKEN_TTL } else { Duration::from_secs(ttl_seconds) };
    if !(TOKEN_TTL_RANGE.0..=TOKEN_TTL_RANGE.1).contains(&ttl) {
        return Err(ProtocolError::invalid("ttl_seconds", "between 1 minute and 7 days"));
    }
    Ok(ttl)
}

fn secret(secret: Option<wire::SecretKey>) -> Result<SecretKey, ProtocolError> {
    SecretKey::try_from(secret.ok_or_else(|| ProtocolError::missing("secret"))?)
}

/// `CreateJoinToken`: a one-time token for the next control-plane node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateJoinToken {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// How long the token is valid.
    pub ttl: Duration,
}

impl TryFrom<wire::CreateJoinTokenRequest> for CreateJoinToken {
    type Error = ProtocolError;

    fn try_from(request: wire::CreateJoinTokenRequest) -> Result<CreateJoinToken, ProtocolError> {
        let wire::CreateJoinTokenRequest { request_id, ttl_seconds } = request;
        Ok(CreateJoinToken {
            request_id: RequestId::parse(&request_id, "request_id")?,
            ttl: token_ttl(ttl_seconds)?,
        })
    }
}

/// `CreateAgentToken`: a one-time enrolment token for an agent of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAgentToken {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The segment the agent serves.
    pub segment: SegmentName,
    /// How long the token is valid.
    pub ttl: Duration,
}

impl TryFrom<wire::CreateAgentTokenRequest> for CreateAgentToken {
    type Error = ProtocolError;

    fn try_from(request: wire::CreateAgentTokenRequest) -> Result<CreateAgentToken, ProtocolError> {
        let wire::CreateAgentTokenRequest { request_id, segment, ttl_seconds } = request;
        Ok(CreateAgentToken {
            request_id: RequestId::parse(&request_id, "request_id")?,
            segment: SegmentName::parse(&segment, "segment")?,
            ttl: token_ttl(ttl_seconds)?,
        })
    }
}

/// `RemoveNode`: take a node out of the cluster and refuse its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveNode {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The node (never 0).
    pub node_id: u64,
}

impl TryFrom<wire::RemoveNodeRequest> for RemoveNode {
    type Error = ProtocolError;

    fn try_from(request: wire::RemoveNodeRequest) -> Result<RemoveNode, ProtocolError> {
        let wire::RemoveNodeRequest { request_id, node_id } = request;
        if node_id == 0 {
            return Err(ProtocolError::missing("node_id"));
        }
        Ok(RemoveNode { request_id: RequestId::parse(&request_id, "request_id")?, node_id })
    }
}

/// `RevokeAgent`: refuse an agent's certificate and close its sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeAgent {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The agent.
    pub agent_id: AgentId,
}

impl TryFrom<wire::RevokeAgentRequest> for RevokeAgent {
    type Error = ProtocolError;

    fn try_from(request: wire::RevokeAgentRequest) -> Result<RevokeAgent, ProtocolError> {
        let wire::RevokeAgentRequest { request_id, agent_id } = request;
        Ok(RevokeAgent {
            request_id: RequestId::parse(&request_id, "request_id")?,
            agent_id: AgentId::parse(&agent_id, "agent_id")?,
        })
    }
}

/// `GetRuns`: runs by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRuns {
    /// The runs (at most [`MAX_RUN_IDS`]).
    pub run_ids: Vec<RunId>,
    /// Include each run's steps.
    pub with_steps: bool,
}

impl TryFrom<wire::GetRunsRequest> for GetRuns {
    type Error = ProtocolError;

    fn try_from(request: wire::GetRunsRequest) -> Result<GetRuns, ProtocolError> {
        let wire::GetRunsRequest { run_ids, with_steps } = request;
        if run_ids.len() > MAX_RUN_IDS {
            return Err(ProtocolError::invalid("run_ids", format!("at most {MAX_RUN_IDS}")));
        }
        let run_ids =
            run_ids.iter().map(|id| RunId::parse(id, "run_ids")).collect::<Result<_, _>>()?;
        Ok(GetRuns { run_ids, with_steps })
    }
}

/// Secrets in a page of `RotationStatus` when the request names no size.
pub const STATUS_PAGE_DEFAULT: usize = 1_000;
/// The most secrets a page of `RotationStatus` holds.
pub const STATUS_PAGE_MAX: usize = 10_000;

/// `RotationStatus`: a page of the secrets of one environment and when they are due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    /// The environment.
    pub env: String,
    /// At most this many secrets.
    pub page_size: usize,
    /// Starting after this variable (the previous page's last).
    pub after: Option<String>,
}

impl TryFrom<wire::RotationStatusRequest> for RotationStatus {
    type Error = ProtocolError;

    fn try_from(request: wire::RotationStatusRequest) -> Result<RotationStatus, ProtocolError> {
        let wire::RotationStatusRequest { env, page_size, page_token } = request;
        super::names::check_config_name(&env, "environment")
            .map_err(|reason| ProtocolError::invalid("env", reason))?;
        let page_size = match page_size as usize {
            0 => STATUS_PAGE_DEFAULT,
            n if n > STATUS_PAGE_MAX => {
                return Err(ProtocolError::invalid(
                    "page_size",
                    format!("is {n}; a page holds at most {STATUS_PAGE_MAX} secrets"),
                ));
            }
            n => n,
        };
        let after = if page_token.is_empty() {
            None
        } else {
            super::names::check_variable_name(&page_token).map_err(|reason| {
                ProtocolError::invalid(
                    "page_token",
                    format!("is not a token this API gave: {reason}"),
                )
            })?;
            Some(page_token)
        };
        Ok(RotationStatus { env, page_size, after })
    }
}

/// `RotationHistory`: a secret's runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationHistory {
    /// The secret.
    pub secret: SecretKey,
    /// How many runs (50 when the request says 0; at most [`MAX_HISTORY`]).
    pub limit: usize,
}

impl TryFrom<wire::RotationHistoryRequest> for RotationHistory {
    type Error = ProtocolError;

    fn try_from(request: wire::RotationHistoryRequest) -> Result<RotationHistory, ProtocolError> {
        let wire::RotationHistoryRequest { secret: key, limit } = request;
        let limit = if limit == 0 { 50 } else { limit as usize };
        if limit > MAX_HISTORY {
            return Err(ProtocolError::invalid("limit", format!("at most {MAX_HISTORY}")));
        }
        Ok(RotationHistory { secret: secret(key)?, limit })
    }
}

/// `Rollback`: restore a secret's previous value with a run of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// Makes a retry apply once.
    pub request_id: RequestId,
    /// The secret.
    pub secret: SecretKey,
}

impl TryFrom<wire::RollbackRequest> for Rollback {
    type Error = ProtocolError;

    fn try_from(request: wire::RollbackRequest) -> Result<Rollback, ProtocolError> {
        let wire::RollbackRequest { request_id, secret: key } = request;
        Ok(Rollback {
            request_id: RequestId::parse(&request_id, "request_id")?,
            secret: secret(key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_refused_naming_the_field() {
        let id = "req-0123456789abcdef".to_owned();
        let error = CreateJoinToken::try_from(wire::CreateJoinTokenRequest {
            request_id: id.clone(),
            ttl_seconds: 5,
        })
        .unwrap_err();
        assert_eq!(error.field, "ttl_seconds");
        let ok = CreateJoinToken::try_from(wire::CreateJoinTokenRequest {
            request_id: id.clone(),
            ttl_seconds: 0,
        })
        .unwrap();
        assert_eq!(ok.ttl, DEFAULT_TOKEN_TTL);
        let error = CreateAgentToken::try_from(wire::CreateAgentTokenRequest {
            request_id: id.clone(),
            segment: "no spaces allowed".to_owned(),
            ttl_seconds: 0,
        })
        .unwrap_err();
        assert_eq!(error.field, "segment");
        let error =
            RemoveNode::try_from(wire::RemoveNodeRequest { request_id: id.clone(), node_id: 0 })
                .unwrap_err();
        assert_eq!(error.field, "node_id");
        let error = RevokeAgent::try_from(wire::RevokeAgentRequest {
            request_id: id.clone(),
            agent_id: "../etc".to_owned(),
        })
        .unwrap_err();
        assert_eq!(error.field, "agent_id");
        let error = GetRuns::try_from(wire::GetRunsRequest {
            run_ids: vec!["run-1".to_owned(); MAX_RUN_IDS + 1],
            with_steps: false,
        })
        .unwrap_err();
        assert_eq!(error.field, "run_ids");
        let error =
            RotationHistory::try_from(wire::RotationHistoryRequest { secret: None, limit: 0 })
                .unwrap_err();
        assert_eq!(error.field, "secret");
        let error =
            Rollback::try_from(wire::RollbackRequest { request_id: String::new(), secret: None })
                .unwrap_err();
        assert_eq!(error.field, "request_id");
    }
}
