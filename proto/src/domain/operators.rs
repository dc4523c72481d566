//! Operators' roles and what each permits: the one table every admin RPC is checked against.
//!
//! | role       | permits                                                        |
//! |------------|----------------------------------------------------------------|
//! | `viewer`   | read (status, history, plans, runs, agents, operators)         |
//! | `operator` | read; rotate and roll back (in its environment, if scoped)     |
//! | `approver` | read; approve and deny (in its environment, if scoped)         |
//! | `admin`    | everything: configuration, cluster, agents, operators          |
//!
//! Also the requests that manage operators: [`GrantRole`], [`InviteOperator`],
//! [`EnrollOperator`], [`RenewOperator`], [`RevokeOperator`].

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
            (OperatorRole::Approver, Permission::Approve { env }) => in_scope(env),
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
    /// Approve or deny a run in `env`.
    Approve {
        /// The environment.
        env: String,
    },
    /// Break glass in `env`: rotate now past approval and windows (admin).
    BreakGlass {
        /// The environment.
        env: String,
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
            Permission::Approve { env } => write!(f, "approve in {env}"),
            Permission::BreakGlass { env } => write!(f, "break glass in {env}"),
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

/// How long an operator invitation lasts when the request names no time.
pub const DEFAULT_INVITE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// How long an operator certificate lasts when the invitation names no time.
pub const DEFAULT_OPERATOR_CERT_DAYS: u32 = 30;

/// Checks an operator's name (the common name of its certificates): a config name.
fn operator_name(name: &str, field: &str) -> Result<(), ProtocolError> {
    super::names::check_config_name(name, "operator")
        .map_err(|reason| ProtocolError::invalid(field, reason))
}

/// `InviteOperator`: a one-time invitation naming the operator and its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteOperator {
    /// Makes a retry apply once.
    pub request_id: super::RequestId,
    /// The operator's name.
    pub name: String,
    /// Its roles once enrolled (at least one).
    pub grants: Vec<RoleGrant>,
    /// How long the invitation is valid (1 minute to 7 days; default one day).
    pub ttl: std::time::Duration,
    /// How long its certificate will be valid, in days (1 to 365; default 30).
    pub certificate_days: u32,
}

impl TryFrom<wire::InviteOperatorRequest> for InviteOperator {
    type Error = ProtocolError;

    fn try_from(request: wire::InviteOperatorRequest) -> Result<InviteOperator, ProtocolError> {
        let wire::InviteOperatorRequest { request_id, name, grants, ttl_seconds, certificate_days } =
            request;
        operator_name(&name, "name")?;
        if grants.is_empty() || grants.len() > 64 {
            return Err(ProtocolError::invalid("grants", "give 1 to 64 roles"));
        }
        let grants = grants.into_iter().map(RoleGrant::try_from).collect::<Result<_, _>>()?;
        let ttl = match ttl_seconds {
            0 => DEFAULT_INVITE_TTL,
            60..=604_800 => std::time::Duration::from_secs(ttl_seconds),
            _ => return Err(ProtocolError::invalid("ttl_seconds", "between 1 minute and 7 days")),
        };
        let certificate_days = match certificate_days {
            0 => DEFAULT_OPERATOR_CERT_DAYS,
            1..=365 => certificate_days,
            _ => return Err(ProtocolError::invalid("certificate_days", "between 1 and 365")),
        };
        Ok(InviteOperator {
            request_id: super::RequestId::parse(&request_id, "request_id")?,
            name,
            grants,
            ttl,
            certificate_days,
        })
    }
}

/// `EnrollOperator`: an invitation's secret and a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollOperator {
    /// The token's secret, lower-case hex.
    pub token_secret: String,
    /// The CSR, PEM.
    pub csr_pem: String,
}

impl TryFrom<wire::EnrollOperatorRequest> for EnrollOperator {
    type Error = ProtocolError;

    fn try_from(request: wire::EnrollOperatorRequest) -> Result<EnrollOperator, ProtocolError> {
        let wire::EnrollOperatorRequest { token_secret, csr_pem } = request;
        if token_secret.len() != 64 || !token_secret.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ProtocolError::invalid("token_secret", "expected 64 hex digits"));
        }
        Ok(EnrollOperator {
            token_secret: token_secret.to_ascii_lowercase(),
            csr_pem: csr(csr_pem)?,
        })
    }
}

fn csr(csr_pem: String) -> Result<String, ProtocolError> {
    if csr_pem.is_empty() {
        return Err(ProtocolError::missing("csr_pem"));
    }
    if csr_pem.len() > 16 * 1024 {
        return Err(ProtocolError::invalid("csr_pem", "longer than 16 KiB"));
    }
    Ok(csr_pem)
}

/// `RenewOperator`: a CSR for the caller's new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewOperator {
    /// Makes a retry apply once.
    pub request_id: super::RequestId,
    /// The CSR, PEM.
    pub csr_pem: String,
}

impl TryFrom<wire::RenewOperatorRequest> for RenewOperator {
    type Error = ProtocolError;

    fn try_from(request: wire::RenewOperatorRequest) -> Result<RenewOperator, ProtocolError> {
        let wire::RenewOperatorRequest { request_id, csr_pem } = request;
        Ok(RenewOperator {
            request_id: super::RequestId::parse(&request_id, "request_id")?,
            csr_pem: csr(csr_pem)?,
        })
    }
}

/// `RevokeOperator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeOperator {
    /// Makes a retry apply once.
    pub request_id: super::RequestId,
    /// The operator.
    pub name: String,
    /// Why (at most 1 KiB).
    pub reason: String,
}

impl TryFrom<wire::RevokeOperatorRequest> for RevokeOperator {
    type Error = ProtocolError;

    fn try_from(request: wire::RevokeOperatorRequest) -> Result<RevokeOperator, ProtocolError> {
        let wire::RevokeOperatorRequest { request_id, name, reason } = request;
        operator_name(&name, "name")?;
        if reason.len() > 1024 {
            return Err(ProtocolError::invalid("reason", "longer than 1 KiB"));
        }
        Ok(RevokeOperator {
            request_id: super::RequestId::parse(&request_id, "request_id")?,
            name,
            reason,
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
        let invite = |name: &str, grants: Vec<wire::RoleGrant>, ttl: u64, days: u32| {
            InviteOperator::try_from(wire::InviteOperatorRequest {
                request_id: "req-0123456789abcdef".into(),
                name: name.into(),
                grants,
                ttl_seconds: ttl,
                certificate_days: days,
            })
        };
        let viewer =
            || vec![wire::RoleGrant { role: OperatorRole::Viewer.to_wire(), env: "".into() }];
        let ok = invite("bob", viewer(), 0, 0).unwrap();
        assert_eq!((ok.ttl, ok.certificate_days), (DEFAULT_INVITE_TTL, DEFAULT_OPERATOR_CERT_DAYS));
        assert_eq!(invite("bob", vec![], 0, 0).unwrap_err().field, "grants");
        assert_eq!(invite("bo b", viewer(), 0, 0).unwrap_err().field, "name");
        assert_eq!(invite("bob", viewer(), 5, 0).unwrap_err().field, "ttl_seconds");
        assert_eq!(invite("bob", viewer(), 0, 366).unwrap_err().field, "certificate_days");
        let enroll = EnrollOperator::try_from(wire::EnrollOperatorRequest {
            token_secret: "zz".into(),
            csr_pem: "x".into(),
        });
        assert_eq!(enroll.unwrap_err().field, "token_secret");
        assert_eq!(OperatorRole::parse("root"), None);
    }
}
