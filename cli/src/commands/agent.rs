//! `dsops agent token create|list|revoke`: remote agents of a cluster.

use dsops_proto::wire::admin as wire;
use serde::Serialize;

use super::rotation::{age, short, time};
use crate::args::{AgentCommand, AgentTokenCommand, Cli, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};

#[derive(Debug, Serialize)]
struct Agent {
    agent_id: String,
    segment: String,
    hostname: String,
    version: String,
    adapters: Vec<String>,
    stores: Vec<String>,
    services: Vec<String>,
    connected: bool,
    connected_since_unix: Option<i64>,
    last_heartbeat_unix: Option<i64>,
    certificate_not_after_unix: Option<i64>,
}

/// `dsops agent ...`.
pub async fn run(cli: &Cli, command: &AgentCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    match command {
        AgentCommand::Token(AgentTokenCommand::Create { segment, ttl }) => {
            let id = request_id();
            let ttl_seconds = ttl.as_secs();
            let response = remote
                .call("agent token create", |mut c| {
                    let request = wire::CreateAgentTokenRequest {
                        request_id: id.clone(),
                        segment: segment.clone(),
                        ttl_seconds,
                    };
                    async move { c.create_agent_token(request).await }
                })
                .await?;
            if cli.output == OutputFormat::Json {
                return print_json(&serde_json::json!({
                    "token": response.token,
                    "segment": segment,
                    "expires_at_unix": response.expires_at.map(|t| t.seconds),
                }));
            }
            out!("{}", response.token);
        }
        AgentCommand::List => {
            let response = remote
                .call("agent list", |mut c| async move {
                    c.list_agents(wire::ListAgentsRequest {}).await
                })
                .await?;
            let agents: Vec<Agent> = response
                .agents
                .into_iter()
                .map(|a| Agent {
                    connected_since_unix: a.connected_since.map(|t| t.seconds),
                    last_heartbeat_unix: a.last_heartbeat.map(|t| t.seconds),
                    certificate_not_after_unix: a.certificate_not_after.map(|t| t.seconds),
                    agent_id: a.agent_id,
                    segment: a.segment,
                    hostname: a.hostname,
                    version: a.version,
                    adapters: a.adapters,
                    stores: a.stores,
                    services: a.services,
                    connected: a.connected,
                })
                .collect();
            if cli.output == OutputFormat::Json {
                return print_json(&agents);
            }
            let mut rows = table(&[
                "AGENT",
                "SEGMENT",
                "HOST",
                "VERSION",
                "CAPABILITIES",
                "CONNECTED SINCE",
                "LAST HEARTBEAT",
                "CERT EXPIRES",
            ]);
            let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
            for a in &agents {
                let capabilities = if a.connected {
                    format!(
                        "{} | stores: {} | services: {}",
                        a.adapters.join(","),
                        a.stores.join(","),
                        a.services.join(",")
                    )
                } else {
                    "-".to_owned()
                };
                rows.add_row(vec![
                    a.agent_id.clone(),
                    a.segment.clone(),
                    a.hostname.clone(),
                    a.version.clone(),
                    capabilities,
                    if a.connected {
                        short(time(&stamp(a.connected_since_unix)))
                    } else {
                        "not connected".to_owned()
                    },
                    a.last_heartbeat_unix.map_or("-".to_owned(), |_| {
                        format!("{} ago", age(time(&stamp(a.last_heartbeat_unix))))
                    }),
                    short(time(&stamp(a.certificate_not_after_unix))),
                ]);
            }
            print_table(&rows);
        }
        AgentCommand::Revoke { agent_id } => {
            let id = request_id();
            let response = remote
                .call("agent revoke", |mut c| {
                    let request = wire::RevokeAgentRequest {
                        request_id: id.clone(),
                        agent_id: agent_id.clone(),
                    };
                    async move { c.revoke_agent(request).await }
                })
                .await?;
            if cli.output == OutputFormat::Json {
                return print_json(&serde_json::json!({
                    "revoked": agent_id,
                    "sessions_closed": response.sessions_closed,
                }));
            }
            out!(
                "revoked {agent_id}; {} session(s) closed; every node refuses it from now on",
                response.sessions_closed
            );
        }
    }
    Ok(())
}
