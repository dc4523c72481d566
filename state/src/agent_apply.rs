//! Applying agent commands: enrolment tokens, enrolment, certificate renewal and revocation.
//! Pure like the rest of `apply`: the certificate is signed by the proposer before the command
//! is written, and handed out only once the command committed.

use super::run_apply::valid_public_key;
use super::runs::{AgentRecord, AgentToken};
use super::{ApplyContext, Outcome, Request, State};
use dsops_proto::ErrorCode;

/// What an agent enrolling presents.
#[derive(Debug, Clone, Copy)]
pub(super) struct Enrolment<'a> {
    pub token_hash: &'a str,
    pub agent_id: &'a str,
    pub public_key: &'a str,
    pub hostname: &'a str,
    pub version: &'a str,
    pub cert_not_after_ms: u64,
}

/// Drops agent tokens past their expiry (used or not), oldest first, without a scan.
fn expire_tokens(state: &mut State, now: u64) {
    while let Some((expiry, hash)) = state.agent_token_expiry.first().cloned() {
        if expiry > now {
            break;
        }
        state.agent_token_expiry.pop_first();
        state.agent_tokens.remove(&hash);
    }
}

pub(super) fn create_token(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token_hash: &str,
    segment: &str,
    expires_at_ms: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    if let Err(error) = dsops_proto::domain::SegmentName::parse(segment, "segment") {
        return Outcome::rejected(ErrorCode::InvalidArgument, error.to_string());
    }
    if expires_at_ms <= now {
        return Outcome::rejected(ErrorCode::InvalidArgument, "the token would already be expired");
    }
    expire_tokens(state, now);
    state.agent_tokens.insert(
        token_hash.to_owned(),
        AgentToken { segment: segment.to_owned(), expires_at_ms, used_by: None },
    );
    state.agent_token_expiry.insert((expires_at_ms, token_hash.to_owned()));
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "agent_token.created",
        &format!("segment {segment}"),
        &format!("expires at {expires_at_ms}"),
    );
    Outcome::AgentTokenCreated
}

pub(super) fn enroll(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    e: Enrolment<'_>,
) -> Outcome {
    let now = request.proposed_at_ms;
    let refuse = |state: &mut State, reason: &str| {
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "agent.enrolment_refused",
            &format!("host {}", e.hostname),
            reason,
        );
        Outcome::rejected(ErrorCode::PermissionDenied, reason)
    };
    let segment = match state.agent_tokens.get(e.token_hash) {
        None => return refuse(state, "unknown enrolment token"),
        Some(token) if token.used_by.is_some() => {
            return refuse(state, "the enrolment token was already used");
        }
        Some(token) if token.expires_at_ms <= now => {
            return refuse(state, "the enrolment token has expired");
        }
        Some(token) => token.segment.clone(),
    };
    if !valid_public_key(e.public_key) {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "signing_public_key: not an Ed25519 public key",
        );
    }
    if state.agents.contains_key(e.agent_id) {
        return Outcome::rejected(
            ErrorCode::AlreadyExists,
            format!("agent {} already exists", e.agent_id),
        );
    }
    if let Some(token) = state.agent_tokens.get_mut(e.token_hash) {
        token.used_by = Some(e.agent_id.to_owned());
    }
    state.agents.insert(
        e.agent_id.to_owned(),
        AgentRecord {
            agent_id: e.agent_id.to_owned(),
            segment: segment.clone(),
            public_key: e.public_key.to_owned(),
            registered_at_ms: now,
            revoked_at_ms: None,
            hostname: e.hostname.to_owned(),
            version: e.version.to_owned(),
            cert_not_after_ms: Some(e.cert_not_after_ms),
        },
    );
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "agent.enrolled",
        e.agent_id,
        &format!("segment {segment}, host {}, key {}", e.hostname, e.public_key),
    );
    Outcome::AgentRegistered { agent_id: e.agent_id.to_owned() }
}

pub(super) fn renew(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    agent_id: &str,
    cert_not_after_ms: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    let Some(agent) = state.agents.get_mut(agent_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no agent {agent_id}"));
    };
    if agent.revoked_at_ms.is_some() {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("agent {agent_id} is revoked"),
        );
    }
    agent.cert_not_after_ms = Some(cert_not_after_ms);
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "agent.certificate_renewed",
        agent_id,
        &format!("expires at {cert_not_after_ms}"),
    );
    Outcome::AgentRegistered { agent_id: agent_id.to_owned() }
}

pub(super) fn revoke(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    agent_id: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let Some(agent) = state.agents.get_mut(agent_id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no agent {agent_id}"));
    };
    if agent.revoked_at_ms.is_none() {
        agent.revoked_at_ms = Some(now);
        state.audit.append(ctx.index, now, &request.actor, "agent.revoked", agent_id, "");
    }
    Outcome::AgentRevoked { agent_id: agent_id.to_owned() }
}

/// A body an agent signed (a delivery or health-check result): its bytes and the agent's
/// segment, or the refusal (unknown or revoked agent, not hex, too large, not its signature).
pub(super) fn agent_signed(
    state: &State,
    agent_id: &str,
    body_hex: &str,
    signature_hex: &str,
    what: &str,
) -> Result<(Vec<u8>, String), Outcome> {
    if body_hex.len() > 4096 || signature_hex.len() > 256 {
        return Err(Outcome::rejected(ErrorCode::InvalidArgument, format!("{what} too large")));
    }
    let Some(agent) = state.agents.get(agent_id).filter(|a| a.revoked_at_ms.is_none()) else {
        return Err(Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("agent {agent_id} is not registered or revoked"),
        ));
    };
    let (Some(body), Some(signature), Some(key)) = (
        dsops_proto::hex_decode(body_hex),
        dsops_proto::hex_decode(signature_hex).and_then(|s| <[u8; 64]>::try_from(s).ok()),
        dsops_proto::hex_decode(&agent.public_key).and_then(|k| <[u8; 32]>::try_from(k).ok()),
    ) else {
        return Err(Outcome::rejected(ErrorCode::InvalidArgument, format!("{what}: not hex")));
    };
    let verified = ed25519_dalek::VerifyingKey::from_bytes(&key).and_then(|key| {
        key.verify_strict(&body, &ed25519_dalek::Signature::from_bytes(&signature))
    });
    if verified.is_err() {
        return Err(Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!("the {what} of agent {agent_id} is not signed by its key"),
        ));
    }
    Ok((body, agent.segment.clone()))
}

#[cfg(test)]
mod tests {
    use super::super::{Command, apply};
    use super::*;

    fn run(state: &mut State, id: &str, at: u64, command: Command) -> Outcome {
        let request =
            Request { request_id: id.into(), actor: "test".into(), proposed_at_ms: at, command };
        apply(state, &request, ApplyContext { index: at }).outcome
    }

    fn key() -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        dsops_proto::hex(key.verifying_key().as_bytes())
    }

    fn enroll_cmd(token: &str, agent: &str) -> Command {
        Command::EnrollAgent {
            token_hash: token.into(),
            agent_id: agent.into(),
            public_key: key(),
            hostname: "bastion-1".into(),
            version: "0.1.0".into(),
            cert_not_after_ms: 9_000,
        }
    }

    fn create(segment: &str, expires: u64) -> Command {
        Command::CreateAgentToken {
            token_hash: "h".into(),
            segment: segment.into(),
            expires_at_ms: expires,
        }
    }

    #[test]
    fn a_token_enrols_one_agent_in_its_segment_once() {
        let mut state = State::default();
        assert_eq!(run(&mut state, "r1", 10, create("eu-db", 100)), Outcome::AgentTokenCreated);
        assert!(matches!(
            run(&mut state, "r2", 20, enroll_cmd("h", "agt-1")),
            Outcome::AgentRegistered { .. }
        ));
        let agent = &state.agents["agt-1"];
        assert_eq!((agent.segment.as_str(), agent.cert_not_after_ms), ("eu-db", Some(9_000)));
        let again = run(&mut state, "r3", 30, enroll_cmd("h", "agt-2"));
        assert!(
            matches!(&again, Outcome::Rejected { message, .. } if message.contains("already used")),
            "{again:?}"
        );
        assert!(!state.agents.contains_key("agt-2"));
        assert!(state.audit.events().iter().any(|e| e.action == "agent.enrolment_refused"));
    }

    #[test]
    fn expired_unknown_and_bad_tokens_enrol_nobody() {
        let mut state = State::default();
        run(&mut state, "r1", 10, create("eu-db", 100));
        let late = run(&mut state, "r2", 100, enroll_cmd("h", "agt-1"));
        assert!(matches!(&late, Outcome::Rejected { message, .. } if message.contains("expired")));
        let unknown = run(&mut state, "r3", 50, enroll_cmd("zz", "agt-1"));
        assert!(
            matches!(&unknown, Outcome::Rejected { message, .. } if message.contains("unknown"))
        );
        let bad = run(&mut state, "r4", 10, create("EU DB", 100));
        assert!(matches!(bad, Outcome::Rejected { .. }));
        assert!(state.agents.is_empty());
    }

    #[test]
    fn revoked_agents_stay_revoked() {
        let mut state = State::default();
        run(&mut state, "r1", 10, create("eu-db", 100));
        run(&mut state, "r2", 20, enroll_cmd("h", "agt-1"));
        assert_eq!(
            run(&mut state, "r3", 30, Command::RevokeAgent { agent_id: "agt-1".into() }),
            Outcome::AgentRevoked { agent_id: "agt-1".into() }
        );
        assert_eq!(state.agents["agt-1"].revoked_at_ms, Some(30));
        let renew =
            Command::RenewAgentCertificate { agent_id: "agt-1".into(), cert_not_after_ms: 1 };
        assert!(matches!(run(&mut state, "r4", 40, renew), Outcome::Rejected { .. }));
        let reregister = Command::RegisterAgent {
            agent_id: "agt-1".into(),
            segment: "eu-db".into(),
            public_key: key(),
        };
        assert!(matches!(run(&mut state, "r5", 50, reregister), Outcome::Rejected { .. }));
    }
}
