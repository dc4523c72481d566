//! `rotation.approvals.<env>`: who must approve rotations of an environment's secrets.

use std::collections::BTreeMap;

use super::parse::{declared, read_targets};
use crate::document::{Diagnostics, Fields, Node, unknown_name};
use crate::time::Duration;

/// The roles an `approvers` entry may name (`role:<role>`).
const APPROVER_ROLES: [&str; 3] = ["approver", "operator", "admin"];

/// `rotation.approvals`: a rule per environment (each must be declared under `envs`).
pub(super) fn parse_approvals(
    rotation: &Fields<'_>,
    envs: Option<&Node>,
    diagnostics: &mut Diagnostics,
) -> BTreeMap<String, super::ApprovalRule> {
    let mut rules = BTreeMap::new();
    let Some(entries) = rotation.entries("approvals", diagnostics) else { return rules };
    let env_names = declared(envs);
    for (key, node) in entries {
        let env = key.scalar_text().unwrap_or_default();
        let path = format!("rotation.approvals.{env}");
        if !env_names.contains(&env) {
            diagnostics.error(
                rotation.file(),
                key.pos,
                &path,
                unknown_name("environment", env, &env_names, None),
            );
            continue;
        }
        let Some(fields) = Fields::read(
            node,
            rotation.file(),
            &path,
            &["required", "approvers", "expires", "notify"],
            diagnostics,
        ) else {
            continue;
        };
        let mut rule = super::ApprovalRule::catalog_default();
        if let Some(required) = fields.integer("required", 1..=16, diagnostics) {
            rule.required = required as u32;
        }
        if let Some(approvers) = fields.string_list("approvers", diagnostics) {
            for (index, entry) in approvers.iter().enumerate() {
                let problem = match entry.strip_prefix("role:") {
                    Some(role) if !APPROVER_ROLES.contains(&role) => Some(format!(
                        "{entry:?} names no role; expected role:approver, role:operator or role:admin"
                    )),
                    Some(_) => None,
                    None => dsops_proto::domain::names::check_config_name(entry, "operator").err(),
                };
                if let Some(problem) = problem {
                    diagnostics.error(
                        rotation.file(),
                        fields.get("approvers").map_or(fields.pos(), |n| match &n.value {
                            crate::document::Value::Seq(items) => items[index].pos,
                            _ => n.pos,
                        }),
                        &format!("{path}.approvers[{index}]"),
                        problem,
                    );
                }
            }
            if approvers.is_empty() {
                fields.error(
                    "approvers",
                    "name at least one approver or role:approver",
                    diagnostics,
                );
            } else {
                rule.approvers = approvers;
            }
        }
        rule.notify = read_targets(&fields, "notify", diagnostics);
        if let Some(text) = fields.string("expires", diagnostics) {
            match Duration::parse(&text) {
                Ok(d) if (5..=30 * 86_400).contains(&d.as_secs()) => rule.expires = d,
                Ok(_) => fields.error("expires", "between 5s and 30d", diagnostics),
                Err(error) => fields.error("expires", error.to_string(), diagnostics),
            }
        }
        rules.insert(env.to_owned(), rule);
    }
    rules
}
