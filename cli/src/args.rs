//! The command line: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// How results are printed, or the file a command writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned tables for people.
    #[default]
    Table,
    /// JSON on standard output, for scripts.
    Json,
    /// The file written by a command that writes one (`evidence export -o bundle.zip`).
    File(PathBuf),
}

/// `-o table`, `-o json`, or `-o FILE` (a name with a dot or a slash) for commands that write a
/// file.
fn parse_output(text: &str) -> Result<OutputFormat, String> {
    match text {
        "table" => Ok(OutputFormat::Table),
        "json" => Ok(OutputFormat::Json),
        _ if text.contains(['.', '/']) => Ok(OutputFormat::File(PathBuf::from(text))),
        _ => Err(format!(
            "expected table, json, or a file name (commands that write a file), got {text:?}"
        )),
    }
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
    #[arg(
        short = 'o',
        long,
        global = true,
        value_name = "table|json|FILE",
        default_value = "table",
        value_parser = parse_output
    )]
    pub output: OutputFormat,
    /// A control-plane node to talk to, HOST:PORT (any node: calls follow the leader).
    #[arg(long, global = true, env = "DSOPS_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The operator credential bundle (ca.pem, operator.pem, operator.key).
    #[arg(long, global = true, env = "DSOPS_CREDENTIALS", value_name = "DIR")]
    pub credentials: Option<PathBuf>,
    /// Where the embedded default keeps its state (used when no --server is given).
    #[arg(
        long,
        global = true,
        env = "DSOPS_STATE_DIR",
        value_name = "DIR",
        default_value = ".dsops"
    )]
    pub state_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The configuration file to use.
    pub fn config_path(&self) -> PathBuf {
        self.file.clone().unwrap_or_else(|| PathBuf::from("dsops.yaml"))
    }

    /// The embedded default's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone()
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
    /// Enrol, list and revoke remote agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Operators and their roles (viewer, operator, approver, admin).
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Rotations waiting for approval: list, show, approve, deny (a cluster only).
    #[command(subcommand)]
    Approval(ApprovalCommand),
    /// Reviews of broken glass: list, close (a cluster only).
    #[command(subcommand)]
    Review(ReviewCommand),
    /// The notification outbox (a cluster only).
    #[command(subcommand)]
    Notification(NotificationCommand),
    /// The audit log: who did what, with a check of its hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Promotion waves: status, halt ("stop the line"), resume (a cluster only).
    #[command(subcommand)]
    Promotion(crate::commands::promotion::PromotionCommand),
    /// Evidence bundles for auditors: export a period, verify a bundle offline.
    #[command(subcommand)]
    Evidence(crate::commands::evidence::EvidenceCommand),
    /// The reports API's read-only tokens for auditors and tools (a cluster only).
    #[command(subcommand)]
    Reports(crate::commands::reports::ReportsCommand),
    /// Rotate secrets now: one, those due in an environment, or those of a service and policy.
    #[command(
        after_help = "Without --server, the embedded default runs here, with its state in .dsops/.\n\nEXAMPLES:\n  dsops rotate --env dev --key DB_PASSWORD\n  dsops rotate --env prod --all\n  dsops rotate --env prod --dry-run\n  dsops rotate --service svc://pg-prod --policy database-production"
    )]
    Rotate(RotateArgs),
    /// Rotation status, history and rollback.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Read and write the local secret stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Print the current value of a secret (read from its store).
    #[command(after_help = "EXAMPLES:\n  dsops get --env dev --key DB_PASSWORD")]
    Get(SecretArgs),
    /// Run a command with an environment's secrets as environment variables.
    #[command(
        after_help = "EXAMPLES:\n  dsops exec --env dev -- ./manage.py migrate\n  dsops exec --env dev -- printenv DB_PASSWORD"
    )]
    Exec(ExecArgs),
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

/// `dsops rotate`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").args(["key", "all", "service"])))]
pub struct RotateArgs {
    /// The environment.
    #[arg(short, long)]
    pub env: Option<String>,
    /// The variable to rotate.
    #[arg(short, long, requires = "env")]
    pub key: Option<String>,
    /// Every secret of the environment that is due.
    #[arg(long, requires = "env")]
    pub all: bool,
    /// Every secret that rotates against this service (`svc://NAME[?kind=KIND]`) ...
    #[arg(long, value_name = "SVC", requires = "policy", conflicts_with = "env")]
    pub service: Option<String>,
    /// ... under this rotation policy.
    #[arg(long, value_name = "POLICY", requires = "service")]
    pub policy: Option<String>,
    /// Only show what would rotate (with --env alone: every secret of it that is due).
    #[arg(long)]
    pub dry_run: bool,
    /// Rotate even if not due or outside maintenance windows (audited). Never skips approval.
    #[arg(long)]
    pub force: bool,
    /// Why: shown to approvers, kept in the run and the audit log.
    #[arg(long)]
    pub reason: Option<String>,
    /// Break glass (admin, one secret, with --reason): rotate now past approval and maintenance
    /// windows; approvers are told and a review opens that another operator must close.
    #[arg(long, requires_all = ["env", "key", "reason"], conflicts_with_all = ["all", "dry_run"])]
    pub break_glass: bool,
    /// Start the runs and return without waiting for them.
    #[arg(long)]
    pub no_wait: bool,
}

/// `dsops rotation ...`.
#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Each secret of an environment: type, last rotation, next due time, age and status.
    #[command(
        after_help = "EXAMPLES:\n  dsops rotation status --env prod\n  dsops rotation status --env prod --output json"
    )]
    Status {
        /// The environment.
        #[arg(short, long)]
        env: String,
    },
    /// The runs of one secret with their steps.
    #[command(after_help = "EXAMPLES:\n  dsops rotation history --env prod --key DB_PASSWORD")]
    History {
        /// The secret.
        #[command(flatten)]
        secret: SecretArgs,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Every secret in a policy's scope against its rules (`policies.<name>` in dsops.yaml): a
    /// table of violations, exit 1 when there is any.
    #[command(
        after_help = "EXAMPLES:\n  dsops rotation enforce --policy company-standard --env production\n  dsops rotation enforce --policy company-standard --output json"
    )]
    Enforce {
        /// The policy.
        #[arg(long)]
        policy: String,
        /// Only this environment of its scope.
        #[arg(short, long)]
        env: Option<String>,
    },
    /// The audit events of an environment's secrets over the last days (runs, steps,
    /// approvals, reminders), with a check of the hash chain.
    #[command(
        after_help = "EXAMPLES:\n  dsops rotation audit --env production --days 90\n  dsops rotation audit --env production --days 90 --export csv > audit.csv\n  dsops rotation audit --env production --output json"
    )]
    Audit {
        /// The environment.
        #[arg(short, long)]
        env: String,
        /// How many days back (1 to 3650).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: u32,
        /// Write CSV instead of a table.
        #[arg(long, value_enum)]
        export: Option<crate::commands::audit::AuditExport>,
    },
    /// How rotations stand (overdue, in flight, awaiting approval, quarantined, agents, raft),
    /// or with --export prometheus the node's metrics for a node-exporter textfile collector.
    #[command(
        after_help = "EXAMPLES:\n  dsops rotation health --env production\n  dsops rotation health --env production --export prometheus > /var/lib/node-exporter/dsops.prom"
    )]
    Health {
        /// Only this environment (default: all).
        #[arg(short, long)]
        env: Option<String>,
        /// Print the metrics in this format instead of a table.
        #[arg(long, value_enum)]
        export: Option<crate::commands::health::HealthExport>,
    },
    /// A compliance report (pci-dss, soc2, hipaa, iso27001, nist-800-53) for an environment and
    /// a period: controls, population, rotations, exceptions and a summary with an age chart.
    #[command(
        after_help = "EXAMPLES:\n  dsops rotation compliance --standard pci-dss --env production --export pdf -o report.pdf\n  dsops rotation compliance --standard soc2 --env production --from 2026-10-01 --to 2026-12-31 --export html -o soc2.html\n  dsops rotation compliance --standard pci-dss --env production --sample 25 --seed 7 --export csv --table rotations\n  dsops rotation compliance --standard iso27001 --env production --output json"
    )]
    Compliance(crate::commands::compliance::ComplianceArgs),
    /// Return a secret to its previous value (a run of its own: stage, apply, verify, promote).
    #[command(after_help = "EXAMPLES:\n  dsops rotation rollback --env prod --key DB_PASSWORD")]
    Rollback {
        /// The secret.
        #[command(flatten)]
        secret: SecretArgs,
    },
}

/// A secret: environment and variable.
#[derive(Debug, Args)]
pub struct SecretArgs {
    /// The environment.
    #[arg(short, long)]
    pub env: String,
    /// The variable.
    #[arg(short, long)]
    pub key: String,
}

/// `dsops exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The environment whose secrets to set.
    #[arg(short, long)]
    pub env: String,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `dsops store ...`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Set a value, read from standard input (never from the command line, where it would
    /// land in shell history).
    #[command(
        after_help = "EXAMPLES:\n  printf %s \"$ADMIN_PASSWORD\" | dsops store put store://local/pg/admin#password\n  echo postgres | dsops store put store://local/pg/admin#user"
    )]
    Put {
        /// `store://<store>/<path>#<field>`.
        reference: String,
    },
    /// Entries of a store with their versions and labels (fingerprints, never values).
    List {
        /// The store name from dsops.yaml.
        store: String,
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
    /// With a cluster: exit 1 when a secret's preflight failed (its agent cannot reach the
    /// target, lacks the credential or the privilege, or two-key users' grants differ).
    #[arg(long)]
    pub check: bool,
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

/// `dsops operator ...`.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Operators with their roles, certificate expiry and when last seen.
    List,
    /// Invite an operator (admin): prints a one-time token for `dsops operator enroll`.
    #[command(
        after_help = "The invited person enrols on their own machine (the key never leaves it):\n  dsops operator enroll --server HOST:PORT --token DSO1.... --out ~/.dsops/alice\n\nEXAMPLES:\n  dsops operator invite alice --role approver --env production\n  dsops operator invite bob --role operator --env staging --role viewer --ttl 4h"
    )]
    Invite {
        /// The operator's name (the common name of its certificate).
        name: String,
        /// A role it will hold (repeatable): viewer, operator, approver or admin.
        #[arg(long = "role", required = true, value_parser = parse_operator_role)]
        roles: Vec<dsops_proto::domain::OperatorRole>,
        /// Limit the operator and approver roles to these environments (repeatable).
        #[arg(long = "env")]
        envs: Vec<String>,
        /// How long the invitation stays valid (e.g. 30m, 1h, 1d; at most 7d).
        #[arg(long, default_value = "24h", value_parser = parse_token_ttl)]
        ttl: std::time::Duration,
        /// How long the certificate will be valid, in days (1 to 365).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=365))]
        days: u32,
    },
    /// Enrol with an invitation: generates a key here and writes a credential bundle.
    #[command(
        after_help = "EXAMPLES:\n  dsops operator enroll --server cp-1.internal:7400 --token DSO1.... --out ~/.dsops/alice\n  DSOPS_OPERATOR_TOKEN=DSO1.... dsops operator enroll --server cp-1.internal:7400 --out ~/.dsops/alice"
    )]
    Enroll {
        /// The invitation (or DSOPS_OPERATOR_TOKEN, which keeps it out of the process list).
        #[arg(long, env = "DSOPS_OPERATOR_TOKEN", hide_env_values = true)]
        token: String,
        /// Where to write the bundle (ca.pem, operator.pem, operator.key); must not hold one.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Renew your certificate for a new key (before it expires); rewrites the bundle in place.
    Renew,
    /// Revoke an operator: its roles go and its certificates are refused on every node.
    Revoke {
        /// The operator.
        name: String,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Give an operator a role: viewer, operator, approver or admin.
    #[command(
        after_help = "The first grant of a cluster also records you (the operator granting) as admin.\n\nEXAMPLES:\n  dsops operator grant alice operator --env prod\n  dsops operator grant bob viewer"
    )]
    Grant {
        /// The operator (the name in its certificate).
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(value_parser = parse_operator_role)]
        role: dsops_proto::domain::OperatorRole,
        /// Limit an operator or approver role to one environment.
        #[arg(long)]
        env: Option<String>,
    },
    /// Take a role away (as it was granted, with the same --env).
    Ungrant {
        /// The operator.
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(value_parser = parse_operator_role)]
        role: dsops_proto::domain::OperatorRole,
        /// The environment the role was limited to.
        #[arg(long)]
        env: Option<String>,
    },
}

pub use crate::args_governance::{
    ApprovalCommand, AuditCommand, NotificationCommand, ReviewCommand,
};

fn parse_operator_role(text: &str) -> Result<dsops_proto::domain::OperatorRole, String> {
    dsops_proto::domain::OperatorRole::parse(text).ok_or_else(|| {
        format!("{text:?} is not a role: expected viewer, operator, approver or admin")
    })
}

/// `dsops agent ...`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enrolment tokens for new agents.
    #[command(subcommand)]
    Token(AgentTokenCommand),
    /// Enrolled agents: segment, version, capabilities, session and certificate expiry.
    List,
    /// Revoke an agent: its session closes and every node refuses it from now on.
    #[command(after_help = "EXAMPLES:\n  dsops agent revoke agt-3f2a9c0d11e4b7a2")]
    Revoke {
        /// The agent id (see `dsops agent list`).
        agent_id: String,
    },
}

/// `dsops agent token ...`.
#[derive(Debug, Subcommand)]
pub enum AgentTokenCommand {
    /// Create a one-time enrolment token bound to a segment.
    #[command(
        after_help = "The agent enrols with it once:\n  dsops-agent enroll --server HOST:PORT --token TOKEN --data-dir /var/lib/dsops-agent\n\nEXAMPLES:\n  dsops agent token create --segment eu-db --ttl 1h"
    )]
    Create {
        /// The segment the agent will serve (as `segment:` in dsops.yaml).
        #[arg(long)]
        segment: String,
        /// How long the token stays valid (e.g. 30m, 1h, 1d).
        #[arg(long, default_value = "1h", value_parser = parse_token_ttl)]
        ttl: std::time::Duration,
    },
}

fn parse_token_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = parse_duration(text)?;
    if !(60..=7 * 24 * 3600).contains(&ttl.as_secs()) {
        return Err("a token lives between 1m and 7d".to_owned());
    }
    Ok(ttl)
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    dsops_config::time::Duration::parse(text)
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
    /// Only instances of this service type, or of the types of this category (database,
    /// api-service, certificate, cloud, ...).
    #[arg(long = "type", value_name = "TYPE")]
    pub service_type: Option<String>,
    /// Only instances whose type has this category, or this finer category (payment, ...).
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
