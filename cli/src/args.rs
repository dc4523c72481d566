//! The command line: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Aligned tables for people.
    #[default]
    Table,
    /// JSON on standard output, for scripts.
    Json,
}

/// dsops rotates secret values — database passwords, API keys, certificates, cloud keys —
/// safely, on schedule, with evidence.
#[derive(Debug, Parser)]
#[command(name = "dsops", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "EXIT STATUS:\n  0  success\n  1  runtime failure\n  2  invalid input (configuration, catalog or flags)\n\nEXAMPLES:\n  dsops validate -f examples/dsops.yaml\n  dsops plan --env prod -f examples/dsops.yaml\n  dsops list services --category database --tag env:prod\n  dsops describe service postgresql\n  dsops completions bash > /etc/bash_completion.d/dsops"
)]
pub struct Cli {
    /// The configuration file [default: dsops.yaml].
    #[arg(short = 'f', long = "file", global = true, env = "DSOPS_CONFIG", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// A control-plane node to talk to, HOST:PORT (any node: calls follow the leader).
    #[arg(long, global = true, env = "DSOPS_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The operator credential bundle (ca.pem, operator.pem, operator.key).
    #[arg(long, global = true, env = "DSOPS_CREDENTIALS", value_name = "DIR")]
    pub credentials: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The configuration file to use.
    pub fn config_path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| PathBuf::from("dsops.yaml"))
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a configuration and the catalog it uses; report every problem at once.
    #[command(
        after_help = "EXAMPLES:\n  dsops validate\n  dsops validate -f deploy/dsops.yaml --output json"
    )]
    Validate,
    /// Show, from configuration alone, what each secret of an environment rotates and when.
    #[command(
        after_help = "EXAMPLES:\n  dsops plan --env dev\n  dsops plan --env prod --output json | jq '.[] | select(.approval_required)'"
    )]
    Plan(PlanArgs),
    /// List catalog entries.
    #[command(subcommand)]
    List(ListCommand),
    /// Describe one catalog entry or configured service in detail.
    #[command(subcommand)]
    Describe(DescribeCommand),
    /// Work with a catalog directory on its own.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Validate a configuration locally, then store it in the cluster and show what changed.
    #[command(
        after_help = "EXAMPLES:\n  dsops apply -f dsops.yaml --server 10.0.0.1:7400 --credentials ./admin\n  dsops apply --expected-version 7"
    )]
    Apply(ApplyArgs),
    /// Inspect and change the control-plane cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "EXAMPLES:\n  dsops completions bash > ~/.local/share/bash-completion/completions/dsops\n  dsops completions zsh > \"${fpath[1]}/_dsops\""
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `dsops plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The environment.
    #[arg(short, long)]
    pub env: String,
    /// Compute due times as of this instant (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("expected an RFC 3339 time such as 2026-12-01T03:00:00Z: {e}"))
}

/// `dsops apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Refuse unless the stored configuration is this version (optimistic concurrency).
    #[arg(long, value_name = "N")]
    pub expected_version: Option<u64>,
}

/// `dsops cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members with id, address and role; the leader, term, applied index and each follower's lag.
    Status,
    /// Create a one-time join token for a new control-plane node.
    Token {
        /// How long the token stays valid (e.g. 30m, 1h, 1d).
        #[arg(long, default_value = "1h", value_parser = parse_token_ttl)]
        ttl: std::time::Duration,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The node id (see `dsops cluster status`).
        node_id: u64,
    },
}

fn parse_token_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = parse_duration(text)?;
    if !(60..=7 * 24 * 3600).contains(&ttl.as_secs()) {
        return Err("a join token lives between 1m and 7d".to_owned());
    }
    Ok(ttl)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    dsops_control_plane::time::Duration::parse(text)
        .map(|d| std::time::Duration::from_secs(d.as_secs()))
        .map_err(|e| e.to_string())
}

/// `dsops list ...`.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Service instances in the catalog (bundled, plus rotation.dataDir).
    #[command(
        after_help = "EXAMPLES:\n  dsops list services\n  dsops list services --type postgresql\n  dsops list services --category database --tag env:prod --tag team:payments"
    )]
    Services(ListServicesArgs),
    /// Service types in the catalog.
    Types,
    /// Rotation policies in the catalog.
    Policies,
}

/// Filters of `dsops list services`.
#[derive(Debug, Args)]
pub struct ListServicesArgs {
    /// Only instances of this service type.
    #[arg(long = "type", value_name = "TYPE")]
    pub service_type: Option<String>,
    /// Only instances whose type has this category (database, api-service, certificate, cloud, ...).
    #[arg(long)]
    pub category: Option<String>,
    /// Only instances with this tag, as key:value (repeat to require several).
    #[arg(long = "tag", value_name = "KEY:VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((key, value)) if !key.is_empty() && !value.is_empty() => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected KEY:VALUE such as env:prod, got {text:?}")),
    }
}

/// `dsops describe ...`.
#[derive(Debug, Subcommand)]
pub enum DescribeCommand {
    /// A service from dsops.yaml, a catalog instance (type/id or id), or a service type.
    #[command(
        after_help = "EXAMPLES:\n  dsops describe service postgresql\n  dsops describe service postgresql/orders-prod\n  dsops describe service pg-dev -f examples/dsops.yaml"
    )]
    Service {
        /// What to describe.
        name: String,
    },
}

/// `dsops catalog ...`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Check a catalog directory (dsops-data layout) on top of the bundled catalog.
    #[command(after_help = "EXAMPLES:\n  dsops catalog validate ./my-catalog")]
    Validate {
        /// The directory.
        dir: PathBuf,
    },
}
