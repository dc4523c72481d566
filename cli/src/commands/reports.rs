//! `dsops reports token create|list|revoke`: read-only bearer tokens for the reports API,
//! scoped to environments, for auditors and tools (a cluster only: the reports API runs on
//! `dsops-server run --reports-listen`).

use clap::Subcommand;
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::Remote;

/// `dsops reports ...`.
#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Tokens for the reports API.
    #[command(subcommand)]
    Token(ReportTokenCommand),
}

/// `dsops reports token ...`.
#[derive(Debug, Subcommand)]
pub enum ReportTokenCommand {
    /// A new token, printed once: `Authorization: Bearer <token>` on the reports API. It reads
    /// only the environments named (all without --env) and nothing else: no rotation, no value.
    #[command(
        after_help = "EXAMPLES:\n  dsops reports token create --env production --ttl 30d --name auditor-2026-q4\n  curl --cacert root-ca.pem -H \"Authorization: Bearer $TOKEN\" https://node-1:9443/v1/status?env=production"
    )]
    Create {
        /// An environment it may read (repeat for more; none: every environment).
        #[arg(short, long = "env")]
        envs: Vec<String>,
        /// How long it works (1h to 400d).
        #[arg(long, default_value = "30d", value_parser = parse_ttl)]
        ttl: std::time::Duration,
        /// A name for people.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// The tokens (never their secrets): scope, creator, expiry and status.
    List,
    /// End a token at once.
    #[command(after_help = "EXAMPLES:\n  dsops reports token revoke rt-3f2a9c1b7e44")]
    Revoke {
        /// The token's id (`rt-...`, from `list` or the token's first part).
        id: String,
    },
}

fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = dsops_config::time::Duration::parse(text).map_err(|e| e.to_string())?;
    if !(3600..=400 * 86_400).contains(&ttl.as_secs()) {
        return Err(format!("expected 1h to 400d, got {text:?}"));
    }
    Ok(std::time::Duration::from_secs(ttl.as_secs()))
}

#[derive(Debug, Serialize)]
struct TokenRow {
    id: String,
    name: String,
    envs: Vec<String>,
    created_by: String,
    created_at_unix: Option<i64>,
    expires_at_unix: Option<i64>,
    status: String,
}

fn when(t: Option<i64>) -> String {
    t.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Runs `dsops reports ...`.
pub async fn run(cli: &Cli, command: &ReportsCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    let ReportsCommand::Token(command) = command;
    match command {
        ReportTokenCommand::Create { envs, ttl, name } => {
            let request = wire::CreateReportTokenRequest {
                request_id: dsops_cli::embedded::random_id(),
                name: name.clone(),
                envs: envs.clone(),
                ttl_seconds: ttl.as_secs(),
            };
            let response = remote
                .call("reports token create", |mut c| {
                    let request = request.clone();
                    async move { c.create_report_token(request).await }
                })
                .await?;
            if cli.output == OutputFormat::Json {
                return print_json(&serde_json::json!({
                    "id": response.id,
                    "token": response.token,
                    "envs": envs,
                    "expires_at_unix": response.expires_at.map(|t| t.seconds),
                }));
            }
            eprintln!(
                "report token {} for {} until {} (shown once; keep it like a password)",
                response.id,
                if envs.is_empty() { "every environment".to_owned() } else { envs.join(", ") },
                when(response.expires_at.map(|t| t.seconds))
            );
            out!("{}", response.token);
        }
        ReportTokenCommand::List => {
            let response = remote
                .call("reports token list", |mut c| async move {
                    c.list_report_tokens(wire::ListReportTokensRequest {}).await
                })
                .await?;
            let rows: Vec<TokenRow> = response
                .tokens
                .into_iter()
                .map(|t| TokenRow {
                    id: t.id,
                    name: t.name,
                    envs: t.envs,
                    created_by: t.created_by,
                    created_at_unix: t.created_at.map(|t| t.seconds),
                    expires_at_unix: t.expires_at.map(|t| t.seconds),
                    status: t.status,
                })
                .collect();
            if cli.output == OutputFormat::Json {
                return print_json(&rows);
            }
            let mut t = table(&[
                "ID",
                "NAME",
                "ENVIRONMENTS",
                "CREATED BY",
                "CREATED",
                "EXPIRES",
                "STATUS",
            ]);
            for r in &rows {
                t.add_row(vec![
                    r.id.clone(),
                    if r.name.is_empty() { "-".into() } else { r.name.clone() },
                    if r.envs.is_empty() { "all".into() } else { r.envs.join(", ") },
                    r.created_by.clone(),
                    when(r.created_at_unix),
                    when(r.expires_at_unix),
                    r.status.clone(),
                ]);
            }
            print_table(&t);
        }
        ReportTokenCommand::Revoke { id } => {
            let request = wire::RevokeReportTokenRequest {
                request_id: dsops_cli::embedded::random_id(),
                id: id.split('.').next().unwrap_or_default().to_owned(),
            };
            remote
                .call("reports token revoke", |mut c| {
                    let request = request.clone();
                    async move { c.revoke_report_token(request).await }
                })
                .await?;
            eprintln!("revoked report token {}", request.id);
        }
    }
    Ok(())
}
