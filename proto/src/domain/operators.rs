//! Operators' roles and what each permits: the one table every admin RPC is checked against.
//!
//! | role       | permits                                                        |
//! |------------|----------------------------------------------------------------|
//! | `viewer`   | read (status, history, plans, runs, agents, operators)         |
//! | `operator` | read; rotate and roll back (in its environment, if scoped)     |
//! | `approver` | read; approve and deny (in its environment, if scoped)         |
//! | `admin`    | everything: configuration, cluster, agents, operators          |

use super::ProtocolError;
use crate::wire::admin as wire;

/// What an operator may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Read only.
    Viewer,
    /// Rotate and roll back.
    Operator,
    /// Approve and deny.
    Approver,
    /// Everything.
    Admin,
}

mirror_wire!(OperatorRole, wire::OperatorRole, "operator role", {
    Viewer => "viewer",
    Operator => "operator",
    Approver => "approver",
    Admin => "admin",
});

impl OperatorRole {
    /// Parses a role name (`viewer`, `operator`, `approver`, `admin`).
    pub fn parse(name: &str) -> Option<OperatorRole> {
        OperatorRole::ALL.iter().copied().find(|role| role.name() == name)
    }
}

/// A role, for every environment (`env: None`) or one.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct RoleGrant {
    /// The role.
    pub role: OperatorRole,
    /// The environment it is limited to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

impl RoleGrant {
    /// Whether this grant permits `permission`.
    pub fn permits(&self, permission: &Permission) -> bool {
        let in_scope = |env: &str| self.env.as_deref().is_none_or(|own| own == env);
        match (self.role, permission) {
            (OperatorRole::Admin, _) => self.env.is_none(),
            (_, Permission::Read) => true,
            (OperatorRole::Operator, Permission::Rotate { env }) => match env {
                Some(env) => in_scope(env),
                None => self.env.is_none(),
            },
            _ => false,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> wire::RoleGrant {
        wire::RoleGrant { role: self.role.to_wire(), env: self.env.clone().unwrap_or_default() }
    }
}

impl std::fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.env {
            Some(env) => write!(f, "{} in {env}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

impl TryFrom<wire::RoleGrant> for RoleGrant {
    type Error = ProtocolError;

    fn try_from(grant: wire::RoleGrant) -> Result<RoleGrant, ProtocolError> {
        let wire::RoleGrant { role, env } = grant;
        let role = OperatorRole::from_wire(role, "grant.role")?;
        let env = if env.is_empty() {
            None
        } else {
            super::names::check_config_name(&env, "environment")
                .map_err(|reason| ProtocolError::invalid("grant.env", reason))?;
            Some(env)
        };
        if env.is_some() && role == OperatorRole::Admin {
            return Err(ProtocolError::invalid(
                "grant.env",
                "admin is not limited to an environment",
            ));
        }
        Ok(RoleGrant { role, env })
    }
}

/// What an admin call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Read status, history, runs, agents, operators.
    Read,
    /// Rotate or roll back in `env` (`None`: secrets of several environments at once).
    Rotate {
        /// The environment.
        env: Option<String>,
    },
    /// Change the configuration.
    Configure,
    /// Join and remove control-plane nodes.
    Cluster,
    /// Enrol and revoke agents.
    Agents,
    /// Grant and take away roles.
    Operators,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::Read => f.write_str("read"),
            Permission::Rotate { env: Some(env) } => write!(f, "rotate in {env}"),
            Permission::Rotate { env: None } => f.write_str("rotate in every environment"),
            Permission::Configure => f.write_str("configure"),
            Permission::Cluster => f.write_str("manage the cluster"),
            Permission::Agents => f.write_str("manage agents"),
            Permission::Operators => f.write_str("manage operators"),
        }
    }
}

/// `GrantRole` / `UngrantRole`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRole {
    /// Makes a retry apply once.
    pub request_id: super::RequestId,
    /// The operator's name (as in its certificate).
    pub operator: String,
    /// The role and scope.
    pub grant: RoleGrant,
}

impl TryFrom<wire::GrantRoleRequest> for GrantRole {
    type Error = ProtocolError;

    fn try_from(request: wire::GrantRoleRequest) -> Result<GrantRole, ProtocolError> {
        let wire::GrantRoleRequest { request_id, operator, grant } = request;
        super::names::check_config_name(&operator, "operator")
            .map_err(|reason| ProtocolError::invalid("operator", reason))?;
        Ok(GrantRole {
            request_id: super::RequestId::parse(&request_id, "request_id")?,
            operator,
            grant: RoleGrant::try_from(grant.ok_or_else(|| ProtocolError::missing("grant"))?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: OperatorRole, env: Option<&str>) -> RoleGrant {
        RoleGrant { role, env: env.map(str::to_owned) }
    }

    #[test]
    fn each_role_permits_what_its_table_says() {
        let rotate = |env: Option<&str>| Permission::Rotate { env: env.map(str::to_owned) };
        let everything = [
            Permission::Read,
            rotate(Some("prod")),
            rotate(None),
            Permission::Configure,
            Permission::Cluster,
            Permission::Agents,
            Permission::Operators,
        ];
        let allowed =
            |g: &RoleGrant| -> Vec<bool> { everything.iter().map(|p| g.permits(p)).collect() };
        let viewer = grant(OperatorRole::Viewer, None);
        assert_eq!(allowed(&viewer), [true, false, false, false, false, false, false]);
        let approver = grant(OperatorRole::Approver, None);
        assert_eq!(allowed(&approver), [true, false, false, false, false, false, false]);
        let operator = grant(OperatorRole::Operator, None);
        assert_eq!(allowed(&operator), [true, true, true, false, false, false, false]);
        let dev_operator = grant(OperatorRole::Operator, Some("dev"));
        assert_eq!(allowed(&dev_operator), [true, false, false, false, false, false, false]);
        assert!(dev_operator.permits(&rotate(Some("dev"))));
        let admin = grant(OperatorRole::Admin, None);
        assert!(everything.iter().all(|p| admin.permits(p)));
    }

    #[test]
    fn grants_are_validated() {
        let request = |role: i32, env: &str| wire::GrantRoleRequest {
            request_id: "req-0123456789abcdef".into(),
            operator: "alice".into(),
            grant: Some(wire::RoleGrant { role, env: env.into() }),
        };
        assert!(GrantRole::try_from(request(OperatorRole::Operator.to_wire(), "prod")).is_ok());
        assert_eq!(GrantRole::try_from(request(0, "")).unwrap_err().field, "grant.role");
        let admin_in_env = GrantRole::try_from(request(OperatorRole::Admin.to_wire(), "prod"));
        assert_eq!(admin_in_env.unwrap_err().field, "grant.env");
        assert_eq!(OperatorRole::parse("approver"), Some(OperatorRole::Approver));
        assert_eq!(OperatorRole::parse("root"), None);
    }
}
