//! Applying operator commands: granting and taking away roles.

use dsops_proto::ErrorCode;
use dsops_proto::domain::{OperatorRole, RoleGrant};

use super::{ApplyContext, OperatorRecord, Outcome, Request, State};

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
            OperatorRecord {
                grants: [admin].into(),
                added_at_ms: now,
                added_by: request.actor.clone(),
            },
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
    if !granted {
        let admins = state
            .operators
            .values()
            .filter(|o| o.grants.iter().any(|g| g.role == OperatorRole::Admin))
            .count();
        let holds = state.operators.get(operator).is_some_and(|o| o.grants.contains(grant));
        if grant.role == OperatorRole::Admin && holds && admins <= 1 {
            return Outcome::rejected(
                ErrorCode::FailedPrecondition,
                format!("{operator} is the last admin; grant admin to someone else first"),
            );
        }
    }
    let record = state.operators.entry(operator.to_owned()).or_insert_with(|| OperatorRecord {
        grants: Default::default(),
        added_at_ms: now,
        added_by: request.actor.clone(),
    });
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
}
