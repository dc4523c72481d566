use dsops_proto::domain::{OperatorRole, RoleGrant};
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OperatorCommand, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};

#[derive(Debug, Serialize)]
struct OperatorRow {
    name: String,
    roles: Vec<String>,
    added_by: String,
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
    let remote = Remote::require(cli)?;
    match command {
        OperatorCommand::List => {
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
                })
                .collect();
            if cli.output == OutputFormat::Json {
                return print_json(&rows);
            }
            if rows.is_empty() {
                out!("no roles granted yet: every operator of the cluster is an admin");
                return Ok(());
            }
            let mut t = table(&["OPERATOR", "ROLES", "ADDED BY"]);
            for row in &rows {
                t.add_row(vec![row.name.clone(), row.roles.join(", "), row.added_by.clone()]);
            }
            print_table(&t);
            Ok(())
        }
        OperatorCommand::Grant { name, role, env } => {
            set(cli, &remote, name, *role, env.as_deref(), true).await
        }
        OperatorCommand::Ungrant { name, role, env } => {
            set(cli, &remote, name, *role, env.as_deref(), false).await
        }
    }
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
