use dsops_proto::domain::{OperatorRole, RoleGrant};
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use super::rotation::{age, short, time};
use crate::args::{Cli, OperatorCommand, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};

#[derive(Debug, Serialize)]
struct OperatorRow {
    name: String,
    roles: Vec<String>,
    added_by: String,
    certificate_not_after_unix: Option<i64>,
    last_seen_unix: Option<i64>,
    revoked: bool,
}

/// The roles of a wire grant list, printable (`operator in prod`).
fn roles(grants: &[wire::RoleGrant]) -> Vec<String> {
    grants
        .iter()
        .map(|g| match RoleGrant::try_from(g.clone()) {
            Ok(grant) => grant.to_string(),
            Err(_) => "unknown".to_owned(),
        })
        .collect()
}

/// `dsops operator ...` (a cluster only: the embedded default has one local operator).
pub async fn run(cli: &Cli, command: &OperatorCommand) -> Result<(), Failure> {
    if let OperatorCommand::Enroll { token, out } = command {
        return enroll(cli, token, out).await;
    }
    let remote = Remote::require(cli)?;
    match command {
        OperatorCommand::List => list(cli, &remote).await,
        OperatorCommand::Grant { name, role, env } => {
            set(cli, &remote, name, *role, env.as_deref(), true).await
        }
        OperatorCommand::Ungrant { name, role, env } => {
            set(cli, &remote, name, *role, env.as_deref(), false).await
        }
        OperatorCommand::Invite { name, roles, envs, ttl, days } => {
            invite(cli, &remote, name, roles, envs, *ttl, *days).await
        }
        OperatorCommand::Renew => renew(cli, &remote).await,
        OperatorCommand::Revoke { name, reason } => {
            let id = request_id();
            let response = remote
                .call("revoke operator", |mut c| {
                    let request = wire::RevokeOperatorRequest {
                        request_id: id.clone(),
                        name: name.clone(),
                        reason: reason.clone(),
                    };
                    async move { c.revoke_operator(request).await }
                })
                .await?;
            let held = roles(&response.grants);
            if cli.output == OutputFormat::Json {
                return print_json(&serde_json::json!({ "revoked": name, "roles_removed": held }));
            }
            let removed = if held.is_empty() { "none".to_owned() } else { held.join(", ") };
            out!(
                "revoked {name} (roles removed: {removed}); every node refuses its certificates from now on"
            );
            Ok(())
        }
        OperatorCommand::Enroll { .. } => unreachable!("handled above"),
    }
}

async fn list(cli: &Cli, remote: &Remote) -> Result<(), Failure> {
    let response = remote
        .call("list operators", |mut c| async move {
            c.list_operators(wire::ListOperatorsRequest {}).await
        })
        .await?;
    let rows: Vec<OperatorRow> = response
        .operators
        .iter()
        .map(|o| OperatorRow {
            name: o.name.clone(),
            roles: roles(&o.grants),
            added_by: o.added_by.clone(),
            certificate_not_after_unix: o.certificate_not_after.map(|t| t.seconds),
            last_seen_unix: o.last_seen.map(|t| t.seconds),
            revoked: o.revoked,
        })
        .collect();
    if cli.output == OutputFormat::Json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        out!("no roles granted yet: every operator of the cluster is an admin");
        return Ok(());
    }
    let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
    let mut t = table(&["OPERATOR", "ROLES", "CERT EXPIRES", "LAST SEEN", "ADDED BY"]);
    for row in &rows {
        let roles = match (row.revoked, row.roles.is_empty()) {
            (true, _) => "revoked".to_owned(),
            (false, true) => "-".to_owned(),
            (false, false) => row.roles.join(", "),
        };
        t.add_row(vec![
            row.name.clone(),
            roles,
            row.certificate_not_after_unix
                .map_or("-".to_owned(), |_| short(time(&stamp(row.certificate_not_after_unix)))),
            row.last_seen_unix.map_or("-".to_owned(), |_| {
                format!("{} ago", age(time(&stamp(row.last_seen_unix))))
            }),
            row.added_by.clone(),
        ]);
    }
    print_table(&t);
    Ok(())
}

async fn invite(
    cli: &Cli,
    remote: &Remote,
    name: &str,
    roles: &[OperatorRole],
    envs: &[String],
    ttl: std::time::Duration,
    days: u32,
) -> Result<(), Failure> {
    // --env scopes the roles that take one; a role given without --env applies everywhere.
    let mut grants = Vec::new();
    for role in roles {
        let scoped = matches!(role, OperatorRole::Operator | OperatorRole::Approver);
        if scoped && !envs.is_empty() {
            grants.extend(
                envs.iter().map(|env| wire::RoleGrant { role: role.to_wire(), env: env.clone() }),
            );
        } else {
            grants.push(wire::RoleGrant { role: role.to_wire(), env: String::new() });
        }
    }
    if !envs.is_empty()
        && !roles.iter().any(|r| matches!(r, OperatorRole::Operator | OperatorRole::Approver))
    {
        return Err(Failure::invalid(
            "--env limits the operator and approver roles; give one of them with --role",
        ));
    }
    let id = request_id();
    let response = remote
        .call("invite operator", |mut c| {
            let request = wire::InviteOperatorRequest {
                request_id: id.clone(),
                name: name.to_owned(),
                grants: grants.clone(),
                ttl_seconds: ttl.as_secs(),
                certificate_days: days,
            };
            async move { c.invite_operator(request).await }
        })
        .await?;
    let expires = response.expires_at.map(|t| t.seconds);
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "operator": name,
            "token": response.token,
            "expires_at_unix": expires,
        }));
    }
    out!("{}", response.token);
    eprintln!(
        "one-time invitation for {name}, valid until {}; on their machine:\n  DSOPS_OPERATOR_TOKEN=<token> dsops operator enroll --server HOST:PORT --out DIR",
        short(time(&response.expires_at))
    );
    Ok(())
}

/// Generates a key and a CSR, sends them with the invitation, writes the bundle.
async fn enroll(cli: &Cli, token: &str, out: &std::path::Path) -> Result<(), Failure> {
    let token = dsops_identity::JoinToken::parse_operator(token).map_err(Failure::invalid)?;
    let server = cli.server.clone().ok_or_else(|| {
        Failure::invalid("enrolment needs a cluster: give --server HOST:PORT (or DSOPS_SERVER)")
    })?;
    if out.join("operator.key").exists() || out.join("operator.pem").exists() {
        return Err(Failure::invalid(format!(
            "{} already holds a credential bundle; choose another --out",
            out.display()
        )));
    }
    let remote = Remote::pinned(
        server.clone(),
        token.ca_fingerprint.clone(),
        cli.output == OutputFormat::Table,
    );
    let (csr_pem, key_pem) = dsops_identity::new_csr("operator")
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("generating a key: {e}")))?;
    let response = remote
        .call("enrol", |mut c| {
            let request = wire::EnrollOperatorRequest {
                token_secret: token.secret.clone(),
                csr_pem: csr_pem.clone(),
            };
            async move { c.enroll_operator(request).await }
        })
        .await?;
    let der = dsops_identity::pem_to_der(&response.ca_pem)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("the cluster sent a bad CA: {e}")))?;
    if dsops_identity::fingerprint(&der) != token.ca_fingerprint {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the cluster sent a CA other than the one the invitation names; nothing was written"
        )));
    }
    let credentials = dsops_identity::Credentials {
        ca_pem: response.ca_pem,
        identity: dsops_identity::CertifiedKey { cert_pem: response.certificate_pem, key_pem },
    };
    dsops_identity::create_private_dir(out)
        .and_then(|()| credentials.write(out))
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("writing {}: {e}", out.display())))?;
    let expires = response.not_after.map(|t| t.seconds);
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "operator": response.name,
            "credentials": out.display().to_string(),
            "certificate_not_after_unix": expires,
        }));
    }
    out!(
        "enrolled as {}; bundle in {} (certificate valid until {}; renew with `dsops operator renew`)\n  export DSOPS_SERVER={server} DSOPS_CREDENTIALS={}",
        response.name,
        out.display(),
        short(time(&response.not_after)),
        out.display()
    );
    Ok(())
}

/// A certificate for a new key, written over the bundle in use.
async fn renew(cli: &Cli, remote: &Remote) -> Result<(), Failure> {
    let dir =
        cli.credentials.clone().ok_or_else(|| Failure::invalid("--credentials DIR is required"))?;
    let current = remote
        .credentials()
        .cloned()
        .ok_or_else(|| Failure::invalid("--credentials DIR is required"))?;
    let (csr_pem, key_pem) = dsops_identity::new_csr("operator")
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("generating a key: {e}")))?;
    let id = request_id();
    let response = remote
        .call("renew", |mut c| {
            let request =
                wire::RenewOperatorRequest { request_id: id.clone(), csr_pem: csr_pem.clone() };
            async move { c.renew_operator(request).await }
        })
        .await?;
    let renewed = dsops_identity::Credentials {
        ca_pem: current.ca_pem,
        identity: dsops_identity::CertifiedKey { cert_pem: response.certificate_pem, key_pem },
    };
    // Written beside the bundle, then moved over it file by file.
    let staging = dir.join(".renewing");
    dsops_identity::create_private_dir(&staging)
        .and_then(|()| renewed.write(&staging))
        .and_then(|()| {
            for file in ["operator.key", "operator.pem", "ca.pem"] {
                std::fs::rename(staging.join(file), dir.join(file))?;
            }
            std::fs::remove_dir(&staging)
        })
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("writing {}: {e}", dir.display())))?;
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "operator": response.name,
            "certificate_not_after_unix": response.not_after.map(|t| t.seconds),
        }));
    }
    out!(
        "renewed {}: a new key and a certificate valid until {} in {}",
        response.name,
        short(time(&response.not_after)),
        dir.display()
    );
    Ok(())
}

async fn set(
    cli: &Cli,
    remote: &Remote,
    name: &str,
    role: OperatorRole,
    env: Option<&str>,
    granted: bool,
) -> Result<(), Failure> {
    let request = wire::GrantRoleRequest {
        request_id: request_id(),
        operator: name.to_owned(),
        grant: Some(wire::RoleGrant {
            role: role.to_wire(),
            env: env.unwrap_or_default().to_owned(),
        }),
    };
    let response = remote
        .call(if granted { "grant role" } else { "take role away" }, |mut c| {
            let request = request.clone();
            async move {
                if granted { c.grant_role(request).await } else { c.ungrant_role(request).await }
            }
        })
        .await?;
    let held = roles(&response.grants);
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({ "operator": name, "roles": held }));
    }
    if held.is_empty() {
        out!("{name} now holds no role");
    } else {
        out!("{name} now holds: {}", held.join(", "));
    }
    Ok(())
}
