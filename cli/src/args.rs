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
