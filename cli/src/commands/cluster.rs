use dsops_proto::domain::MemberRole;
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, ClusterCommand, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};

#[derive(Debug, Serialize)]
struct Status {
    leader_id: Option<u64>,
    term: u64,
    last_applied_index: u64,
    members: Vec<Member>,
}

#[derive(Debug, Serialize)]
struct Member {
    id: u64,
    address: String,
    role: String,
    matched_index: u64,
    lag: u64,
}

/// `dsops cluster ...`.
pub async fn run(cli: &Cli, command: &ClusterCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    match command {
        ClusterCommand::Status => {
            let status = remote
                .call("cluster status", |mut c| async move {
                    c.cluster_status(wire::ClusterStatusRequest {}).await
                })
                .await?;
            let status = Status {
                leader_id: (status.leader_id != 0).then_some(status.leader_id),
                term: status.term,
                last_applied_index: status.last_applied_index,
                members: status
                    .members
                    .into_iter()
                    .map(|m| Member {
                        id: m.id,
                        address: m.address,
                        role: MemberRole::from_wire(m.role, "role")
                            .map_or("unknown", MemberRole::name)
                            .to_owned(),
                        matched_index: m.matched_index,
                        lag: m.lag,
                    })
                    .collect(),
            };
            if cli.output == OutputFormat::Json {
                return print_json(&status);
            }
            out!(
                "leader: {}   term: {}   last applied index: {}",
                status.leader_id.map_or("none".to_owned(), |l| l.to_string()),
                status.term,
                status.last_applied_index
            );
            let mut rows = table(&["ID", "ADDRESS", "ROLE", "MATCHED", "LAG"]);
            for m in &status.members {
                rows.add_row(vec![
                    m.id.to_string(),
                    m.address.clone(),
                    m.role.clone(),
                    m.matched_index.to_string(),
                    m.lag.to_string(),
                ]);
            }
            print_table(&rows);
        }
        ClusterCommand::Token { ttl } => {
            let id = request_id();
            let ttl_seconds = ttl.as_secs();
            let response = remote
                .call("cluster token", |mut c| {
                    let request =
                        wire::CreateJoinTokenRequest { request_id: id.clone(), ttl_seconds };
                    async move { c.create_join_token(request).await }
                })
                .await?;
            if cli.output == OutputFormat::Json {
                return print_json(
                    &serde_json::json!({ "token": response.token, "expires_at_unix": response.expires_at.map(|t| t.seconds) }),
                );
            }
            out!("{}", response.token);
        }
        ClusterCommand::Remove { node_id } => {
            let id = request_id();
            let node_id = *node_id;
            let response = remote
                .call("cluster remove", |mut c| {
                    let request = wire::RemoveNodeRequest { request_id: id.clone(), node_id };
                    async move { c.remove_node(request).await }
                })
                .await?;
            if cli.output == OutputFormat::Json {
                return print_json(
                    &serde_json::json!({ "removed": node_id, "voters": response.voter_ids }),
                );
            }
            let voters: Vec<String> = response.voter_ids.iter().map(ToString::to_string).collect();
            out!("removed node {node_id}; voters now: {}", voters.join(", "));
        }
    }
    Ok(())
}
