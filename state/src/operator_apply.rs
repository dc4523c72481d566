//! Applying operator commands: granting and taking away roles.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{OperatorRole, RoleGrant};

use super::{ApplyContext, OperatorInvite, OperatorRecord, Outcome, Request, State};

/// Grants or takes away `grant` from `operator`. The first grant of a cluster records the
/// proposing operator as admin first, so nobody is locked out by the switch from "every operator
/// is an admin" to roles. Taking away the last admin is refused.
pub(super) fn set_role(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    operator: &str,
    grant: &RoleGrant,
    granted: bool,
) -> Outcome {
    let now = request.proposed_at_ms;
    if operator.is_empty() || operator.len() > 128 {
        return Outcome::rejected(ErrorCode::InvalidArgument, "operator: 1 to 128 bytes");
    }
    if state.operators.is_empty() {
        let admin = RoleGrant { role: OperatorRole::Admin, env: None };
        state.operators.insert(
            request.actor.clone(),
            OperatorRecord { grants: [admin].into(), ..OperatorRecord::new(now, &request.actor) },
        );
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "operator.role_granted",
            &format!("operator {}", request.actor),
            "admin (the first grant of the cluster: its proposer keeps admin)",
        );
    }
    if !granted && grant.role == OperatorRole::Admin {
        let holds = state.operators.get(operator).is_some_and(|o| o.grants.contains(grant));
        if holds && is_last_admin(state, operator) {
            return Outcome::rejected(
                ErrorCode::FailedPrecondition,
                format!("{operator} is the last admin; grant admin to someone else first"),
            );
        }
    }
    let record = state
        .operators
        .entry(operator.to_owned())
        .or_insert_with(|| OperatorRecord::new(now, &request.actor));
    let changed =
        if granted { record.grants.insert(grant.clone()) } else { record.grants.remove(grant) };
    let grants: Vec<RoleGrant> = record.grants.iter().cloned().collect();
    if changed {
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            if granted { "operator.role_granted" } else { "operator.role_removed" },
            &format!("operator {operator}"),
            &grant.to_string(),
        );
    }
    Outcome::RolesChanged { operator: operator.to_owned(), grants }
}

/// Whether `operator` is the only one holding admin.
fn is_last_admin(state: &State, operator: &str) -> bool {
    let is_admin = |o: &OperatorRecord| o.grants.iter().any(|g| g.role == OperatorRole::Admin);
    let admins: Vec<&String> =
        state.operators.iter().filter(|(_, o)| is_admin(o)).map(|(name, _)| name).collect();
    admins.len() <= 1 && admins.iter().any(|name| name.as_str() == operator)
}

/// Records an invitation; expired ones are forgotten first.
pub(super) fn invite(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token_hash: &str,
    invitation: OperatorInvite,
) -> Outcome {
    let now = request.proposed_at_ms;
    state.operator_invites.retain(|_, invite| invite.expires_at_ms > now);
    let OperatorInvite { name, grants, expires_at_ms, certificate_days, .. } = &invitation;
    if name.is_empty() || name.len() > 128 || token_hash.len() != 64 {
        return Outcome::rejected(ErrorCode::InvalidArgument, "name: 1 to 128 bytes");
    }
    if grants.is_empty() || grants.len() > 64 {
        return Outcome::rejected(ErrorCode::InvalidArgument, "an invitation grants 1 to 64 roles");
    }
    if *expires_at_ms <= now || !(1..=365).contains(certificate_days) {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "the invitation would already be expired, or the certificate lifetime is not 1 to 365 days",
        );
    }
    if state.operator_invites.len() >= super::MAX_OPERATOR_INVITES {
        return Outcome::rejected(
            ErrorCode::ResourceExhausted,
            format!(
                "{} operator invitations are waiting; let some expire first",
                super::MAX_OPERATOR_INVITES
            ),
        );
    }
    let roles: Vec<String> = grants.iter().map(ToString::to_string).collect();
    let detail = format!("roles {}; invitation expires at {expires_at_ms}", roles.join(", "));
    let subject = format!("operator {name}");
    state.operator_invites.insert(token_hash.to_owned(), invitation);
    state.audit.append(ctx.index, now, &request.actor, "operator.invited", &subject, &detail);
    Outcome::TokenCreated
}

/// Spends an invitation: its operator gets the invited roles (added to any it holds) and its
/// certificate's expiry is recorded; a revoked operator enrolled again is no longer revoked
/// (its old certificates stay refused: they were issued before the revocation).
pub(super) fn enroll(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token_hash: &str,
    cert_not_after_ms: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    let invite = match state.operator_invites.get(token_hash) {
        None => {
            return Outcome::rejected(ErrorCode::PermissionDenied, "unknown operator invitation");
        }
        Some(invite) if invite.expires_at_ms <= now => {
            return Outcome::rejected(
                ErrorCode::PermissionDenied,
                "the operator invitation has expired",
            );
        }
        Some(_) => state.operator_invites.remove(token_hash).expect("present"),
    };
    let record = state
        .operators
        .entry(invite.name.clone())
        .or_insert_with(|| OperatorRecord::new(now, &invite.invited_by));
    record.grants.extend(invite.grants.iter().cloned());
    record.cert_not_after_ms = Some(cert_not_after_ms);
    record.revoked_at_ms = None;
    let grants: Vec<RoleGrant> = record.grants.iter().cloned().collect();
    let roles: Vec<String> = grants.iter().map(ToString::to_string).collect();
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "operator.enrolled",
        &format!("operator {}", invite.name),
        &format!(
            "invited by {}; roles {}; certificate until {cert_not_after_ms}",
            invite.invited_by,
            roles.join(", ")
        ),
    );
    Outcome::OperatorEnrolled { name: invite.name, grants }
}

/// Records a renewed certificate's expiry.
pub(super) fn renew(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    name: &str,
    cert_not_after_ms: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    let bootstrap = state.operators.is_empty();
    let record = match state.operators.get_mut(name) {
        Some(record) if record.revoked_at_ms.is_some() => {
            return Outcome::rejected(
                ErrorCode::PermissionDenied,
                format!("operator {name} is revoked"),
            );
        }
        Some(record) => record,
        None if bootstrap => {
            state.operators.insert(
                name.to_owned(),
                OperatorRecord {
                    grants: [RoleGrant { role: OperatorRole::Admin, env: None }].into(),
                    ..OperatorRecord::new(now, name)
                },
            );
            state.operators.get_mut(name).expect("inserted")
        }
        None => {
            return Outcome::rejected(
                ErrorCode::PermissionDenied,
                format!("{name} is not an operator of this cluster"),
            );
        }
    };
    record.cert_not_after_ms = Some(cert_not_after_ms);
    let grants: Vec<RoleGrant> = record.grants.iter().cloned().collect();
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "operator.renewed",
        &format!("operator {name}"),
        &format!("certificate until {cert_not_after_ms}"),
    );
    Outcome::OperatorEnrolled { name: name.to_owned(), grants }
}

/// Revokes an operator: its roles and its certificates issued until now.
pub(super) fn revoke(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    name: &str,
    reason: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    if name.is_empty() || name.len() > 128 || reason.len() > 1024 {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            "name must be 1 to 128 bytes and reason at most 1024",
        );
    }
    if is_last_admin(state, name) {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("{name} is the last admin; grant admin to someone else first"),
        );
    }
    let grants: Vec<RoleGrant> = match state.operators.get_mut(name) {
        Some(record) => {
            record.revoked_at_ms = Some(now);
            std::mem::take(&mut record.grants).into_iter().collect()
        }
        None => Vec::new(),
    };
    // Invitations for the name go too: revoking means "this person no longer acts here".
    state.operator_invites.retain(|_, invite| invite.name != name);
    let revoked =
        super::cluster_apply::revoke_identity(state, request, ctx, "operator", name, reason);
    if let Outcome::Rejected { .. } = revoked {
        return revoked;
    }
    Outcome::RolesChanged { operator: name.to_owned(), grants }
}

#[cfg(test)]
mod tests {
    use dsops_proto::domain::Permission;

    use super::*;
    use crate::{Command, apply};

    fn set(
        state: &mut State,
        index: u64,
        actor: &str,
        operator: &str,
        grant: RoleGrant,
        granted: bool,
    ) -> Outcome {
        let request = Request {
            request_id: format!("r{index}"),
            actor: actor.into(),
            proposed_at_ms: 1_000 + index,
            command: Command::SetRole { operator: operator.into(), grant, granted },
        };
        apply(state, &request, ApplyContext { index }).outcome
    }

    #[test]
    fn the_first_grant_keeps_its_proposer_admin_and_the_last_admin_stays() {
        let mut state = State::default();
        let prod_operator = || Permission::Rotate { env: Some("prod".into()) };
        assert!(state.operator_permits("anyone", &Permission::Configure).is_ok(), "bootstrap");
        let viewer = RoleGrant { role: OperatorRole::Viewer, env: None };
        assert!(matches!(
            set(&mut state, 1, "admin", "vera", viewer, true),
            Outcome::RolesChanged { .. }
        ));
        assert!(state.operator_permits("admin", &Permission::Operators).is_ok());
        assert!(state.operator_permits("vera", &Permission::Read).is_ok());
        let refused = state.operator_permits("vera", &prod_operator()).unwrap_err();
        assert!(refused.contains("vera may not rotate in prod (holds: viewer)"), "{refused}");
        assert!(
            state.operator_permits("mallory", &Permission::Read).unwrap_err().contains("no role")
        );
        let admin = RoleGrant { role: OperatorRole::Admin, env: None };
        let last = set(&mut state, 2, "admin", "admin", admin.clone(), false);
        assert!(
            matches!(last, Outcome::Rejected { code: ErrorCode::FailedPrecondition, .. }),
            "{last:?}"
        );
        let dev = RoleGrant { role: OperatorRole::Operator, env: Some("dev".into()) };
        set(&mut state, 3, "admin", "otto", dev.clone(), true);
        assert!(
            state.operator_permits("otto", &Permission::Rotate { env: Some("dev".into()) }).is_ok()
        );
        assert!(state.operator_permits("otto", &prod_operator()).is_err());
        set(&mut state, 4, "admin", "otto", dev, false);
        assert!(state.operator_permits("otto", &Permission::Read).is_err());
    }

    fn run(state: &mut State, index: u64, actor: &str, command: Command) -> Outcome {
        let request = Request {
            request_id: format!("r{index}"),
            actor: actor.into(),
            proposed_at_ms: 1_000 + index,
            command,
        };
        apply(state, &request, ApplyContext { index }).outcome
    }

    fn invite(hash: &str, name: &str, expires_at_ms: u64) -> Command {
        Command::InviteOperator {
            token_hash: hash.repeat(64 / hash.len()),
            name: name.into(),
            grants: vec![RoleGrant { role: OperatorRole::Approver, env: Some("prod".into()) }],
            expires_at_ms,
            certificate_days: 30,
        }
    }

    #[test]
    fn invitations_are_spent_once_expire_and_are_bounded() {
        let mut state = State::default();
        let admin = RoleGrant { role: OperatorRole::Admin, env: None };
        set(&mut state, 1, "admin", "admin", admin, true);
        assert_eq!(run(&mut state, 2, "admin", invite("a", "bob", 10_000)), Outcome::TokenCreated);
        let enroll = |hash: &str| Command::EnrollOperator {
            token_hash: hash.repeat(64 / hash.len()),
            cert_not_after_ms: 99,
        };
        let enrolled = run(&mut state, 3, "bob", enroll("a"));
        assert!(matches!(&enrolled, Outcome::OperatorEnrolled { name, .. } if name == "bob"));
        assert!(state.operator_permits("bob", &Permission::Read).is_ok());
        assert_eq!(state.operators["bob"].cert_not_after_ms, Some(99));
        let again = run(&mut state, 4, "bob", enroll("a"));
        assert!(matches!(again, Outcome::Rejected { code: ErrorCode::PermissionDenied, .. }));
        // Expired: refused, and forgotten by the next invitation.
        run(&mut state, 5, "admin", invite("b", "carl", 1_006));
        let late = run(&mut state, 10, "carl", enroll("b"));
        assert!(matches!(late, Outcome::Rejected { code: ErrorCode::PermissionDenied, .. }));
        run(&mut state, 11, "admin", invite("c", "dora", 10_000));
        assert_eq!(state.operator_invites.len(), 1, "the expired one was dropped");
        // At most MAX_OPERATOR_INVITES wait at once.
        for i in 0..crate::MAX_OPERATOR_INVITES {
            let hash = format!("{i:064x}");
            run(
                &mut state,
                100 + i as u64,
                "admin",
                Command::InviteOperator {
                    token_hash: hash,
                    name: "eve".into(),
                    grants: vec![RoleGrant { role: OperatorRole::Viewer, env: None }],
                    expires_at_ms: 100_000,
                    certificate_days: 1,
                },
            );
        }
        assert_eq!(state.operator_invites.len(), crate::MAX_OPERATOR_INVITES);
        let full = run(&mut state, 999, "admin", invite("d", "fay", 100_000));
        assert!(matches!(full, Outcome::Rejected { code: ErrorCode::ResourceExhausted, .. }));
        // Revoking takes the roles and the pending invitations of the name, and the identity.
        let revoked = run(
            &mut state,
            1_000,
            "admin",
            Command::RevokeOperator { name: "eve".into(), reason: "test".into() },
        );
        assert!(matches!(revoked, Outcome::RolesChanged { .. }));
        assert_eq!(state.operator_invites.len(), 1, "only dora's is left");
        assert!(state.is_revoked("operator", "eve", 1_500));
        let last = run(
            &mut state,
            1_001,
            "bob",
            Command::RevokeOperator { name: "admin".into(), reason: String::new() },
        );
        assert!(matches!(last, Outcome::Rejected { code: ErrorCode::FailedPrecondition, .. }));
        let renew = run(
            &mut state,
            1_002,
            "eve",
            Command::RenewOperatorCertificate { name: "eve".into(), cert_not_after_ms: 5 },
        );
        assert!(matches!(renew, Outcome::Rejected { code: ErrorCode::PermissionDenied, .. }));
    }
}
