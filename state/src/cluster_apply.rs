//! Applying cluster commands: node records, join tokens, certificate revocation.

use dsops_proto::ErrorCode;

use super::{ApplyContext, NodeRecord, NodeRole, Outcome, Request, State, StoredToken};

/// Records (or updates) a control-plane node.
pub(super) fn register_node(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    node_id: u64,
    address: &str,
    role: NodeRole,
) -> Outcome {
    let now = request.proposed_at_ms;
    let joined_at_ms = state.nodes.get(&node_id).map_or(now, |n| n.joined_at_ms);
    state
        .nodes
        .insert(node_id, NodeRecord { node_id, address: address.to_owned(), role, joined_at_ms });
    state.max_node_id = state.max_node_id.max(node_id);
    state.audit.append(
        ctx.index,
        now,
        &request.actor,
        "node.registered",
        &format!("node {node_id}"),
        address,
    );
    Outcome::NodeUpdated { node_id }
}

/// Forgets a node that left the membership.
pub(super) fn forget_node(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    node_id: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    if state.nodes.remove(&node_id).is_some() {
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "node.removed",
            &format!("node {node_id}"),
            "",
        );
        Outcome::NodeUpdated { node_id }
    } else {
        Outcome::rejected(ErrorCode::NotFound, format!("node {node_id} is not a member"))
    }
}

/// Stores a join token's hash until it expires; expired ones are forgotten.
pub(super) fn create_join_token(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token_hash: &str,
    expires_at_ms: u64,
) -> Outcome {
    let now = request.proposed_at_ms;
    if expires_at_ms <= now {
        Outcome::rejected(ErrorCode::InvalidArgument, "the token would already be expired")
    } else {
        state
            .join_tokens
            .insert(token_hash.to_owned(), StoredToken { expires_at_ms, used_by: None });
        state.token_expiry.insert((expires_at_ms, token_hash.to_owned()));
        // Tokens past their expiry are forgotten (used or not), oldest first, without
        // scanning the table.
        while let Some((expiry, hash)) = state.token_expiry.first().cloned() {
            if expiry > now {
                break;
            }
            state.token_expiry.pop_first();
            state.join_tokens.remove(&hash);
        }
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "join_token.created",
            "cluster",
            &format!("expires at {expires_at_ms}"),
        );
        Outcome::TokenCreated
    }
}

/// Uses a join token (once) and assigns the joining node its id.
pub(super) fn consume_join_token(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    token_hash: &str,
    address: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    match state.join_tokens.get_mut(token_hash) {
        None => Outcome::rejected(ErrorCode::PermissionDenied, "unknown join token"),
        Some(token) if token.used_by.is_some() => {
            Outcome::rejected(ErrorCode::PermissionDenied, "the join token was already used")
        }
        Some(token) if token.expires_at_ms <= now => {
            Outcome::rejected(ErrorCode::PermissionDenied, "the join token has expired")
        }
        Some(token) => {
            let node_id = state.max_node_id + 1;
            token.used_by = Some(node_id);
            state.max_node_id = node_id;
            state.nodes.insert(
                node_id,
                NodeRecord {
                    node_id,
                    address: address.to_owned(),
                    role: NodeRole::Voter,
                    joined_at_ms: now,
                },
            );
            state.audit.append(
                ctx.index,
                now,
                &request.actor,
                "node.joined",
                &format!("node {node_id}"),
                address,
            );
            Outcome::TokenConsumed { node_id }
        }
    }
}

/// Refuses from now on every certificate of `role:name` issued until now.
pub(super) fn revoke_identity(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    role: &str,
    name: &str,
    reason: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    if !matches!(role, "peer" | "agent" | "operator") {
        Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!("role {role:?}: expected peer, agent or operator"),
        )
    } else if name.is_empty() || name.len() > 128 || reason.len() > 1024 {
        Outcome::rejected(
            ErrorCode::InvalidArgument,
            "name must be 1 to 128 bytes and reason at most 1024",
        )
    } else {
        let identity = format!("{role}:{name}");
        state.revoked.insert(
            identity.clone(),
            super::RevokedIdentity {
                role: role.to_owned(),
                name: name.to_owned(),
                issued_up_to_ms: now,
                by: request.actor.clone(),
                reason: reason.to_owned(),
            },
        );
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "certificate.revoked",
            &identity,
            &format!("certificates issued until now are refused: {reason}"),
        );
        Outcome::IdentityRevoked { identity }
    }
}
