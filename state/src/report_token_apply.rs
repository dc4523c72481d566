//! Report tokens: scoped, read-only bearer tokens for auditors and tools on the reports API.
//! Only a token's SHA-256 is stored; it is shown once, when created. A token covers the
//! environments it names (all when it names none) and ends at its expiry or its revocation.

use dsops_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use super::{ApplyContext, Outcome, Request, State};

/// The most report tokens kept (expired and revoked ones are dropped first).
pub const MAX_REPORT_TOKENS: usize = 256;
/// The most environments one token names.
pub const MAX_TOKEN_ENVS: usize = 64;

/// A report token, as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportToken {
    /// Its id (`rt-…`, the first part of the token).
    pub id: String,
    /// A name for people (`auditor-2026-q4`).
    pub name: String,
    /// Hex SHA-256 of its secret part.
    pub token_hash: String,
    /// The environments it may read (empty: all).
    pub envs: Vec<String>,
    /// Who created it.
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at_ms: u64,
    /// When it stops working.
    pub expires_at_ms: u64,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

impl ReportToken {
    /// Whether it may be used at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        self.revoked_at_ms.is_none() && now < self.expires_at_ms
    }

    /// Whether it may read environment `env`.
    pub fn covers(&self, env: &str) -> bool {
        self.envs.is_empty() || self.envs.iter().any(|e| e == env)
    }
}

fn valid_id(id: &str) -> bool {
    id.starts_with("rt-")
        && (8..=40).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(super) fn create(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token: &ReportToken,
) -> Outcome {
    let now = request.proposed_at_ms;
    let hex =
        token.token_hash.len() == 64 && token.token_hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_id(&token.id) || !hex {
        return Outcome::rejected(ErrorCode::InvalidArgument, "a malformed report token");
    }
    if token.name.len() > 128 || token.name.chars().any(char::is_control) {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "name: at most 128 printable characters",
        );
    }
    if token.envs.len() > MAX_TOKEN_ENVS || token.envs.iter().any(|e| e.is_empty() || e.len() > 128)
    {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("env: at most {MAX_TOKEN_ENVS} names of 1 to 128 characters"),
        );
    }
    if token.expires_at_ms <= now {
        return Outcome::rejected(ErrorCode::InvalidArgument, "the token would already be expired");
    }
    state.report_tokens.retain(|_, t| t.is_live(now));
    if state.report_tokens.contains_key(&token.id) {
        return Outcome::rejected(
            ErrorCode::AlreadyExists,
            format!("report token {} exists", token.id),
        );
    }
    if state.report_tokens.len() >= MAX_REPORT_TOKENS {
        return Outcome::rejected(
            ErrorCode::ResourceExhausted,
            format!("at most {MAX_REPORT_TOKENS} report tokens are live at once; revoke one first"),
        );
    }
    let stored = ReportToken {
        created_by: request.actor.clone(),
        created_at_ms: now,
        revoked_at_ms: None,
        ..token.clone()
    };
    let scope = if stored.envs.is_empty() {
        "every environment".to_owned()
    } else {
        stored.envs.join(", ")
    };
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "reports_token.created",
        &format!("report token {}", stored.id),
        &format!("{:?} reads {scope} until {}", stored.name, stored.expires_at_ms),
    );
    let id = stored.id.clone();
    state.report_tokens.insert(id.clone(), stored);
    Outcome::ReportTokenUpdated { id }
}

pub(super) fn revoke(state: &mut State, request: &Request, ctx: ApplyContext, id: &str) -> Outcome {
    let now = request.proposed_at_ms;
    let Some(token) = state.report_tokens.get_mut(id).filter(|t| t.revoked_at_ms.is_none()) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no live report token {id:?}"));
    };
    token.revoked_at_ms = Some(now);
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "reports_token.revoked",
        &format!("report token {id}"),
        "",
    );
    Outcome::ReportTokenUpdated { id: id.to_owned() }
}
