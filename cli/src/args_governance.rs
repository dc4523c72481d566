//! The arguments of the governance commands: the audit log, notifications, reviews of broken
//! glass, approvals (`args.rs` holds the rest).

use clap::Subcommand;

/// `dsops audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Events, oldest first (the last 100 unless --after), with a check of their hash chain.
    #[command(
        after_help = "EXAMPLES:\n  dsops audit list\n  dsops audit list --action approval. --limit 500\n  dsops audit list --subject production/DB_PASSWORD -o json"
    )]
    List {
        /// Events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events read (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Only actions starting with this (`approval.`, `operator.`, `run.`).
        #[arg(long, default_value = "")]
        action: String,
        /// Only this subject (`production/DB_PASSWORD`, `operator alice`).
        #[arg(long, default_value = "")]
        subject: String,
    },
}

/// `dsops notification ...`.
#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Deliveries, newest first: pending, delivered and dead.
    List {
        /// Only dead letters (given up after too many tries).
        #[arg(long)]
        failed: bool,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// `dsops review ...`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Open reviews (with --all, recently closed ones too), oldest first.
    List {
        /// Closed reviews too.
        #[arg(long)]
        all: bool,
    },
    /// Close a review: by an approver of its environment other than who broke glass.
    #[command(
        after_help = "EXAMPLES:\n  dsops review close rv-1234 --note \"INC-77: leaked key, rotation was right\""
    )]
    Close {
        /// The review id (`rv-…`).
        id: String,
        /// What the review found (required).
        #[arg(long)]
        note: String,
    },
}

/// `dsops approval ...`.
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// Runs waiting for approval, oldest first.
    List {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
    },
    /// One run's approval: its plan, who may approve, and the decisions so far.
    Show {
        /// The run id.
        run: String,
    },
    /// Approve a run: your decision is signed with your key and bound to the run's plan.
    #[command(
        after_help = "EXAMPLES:\n  dsops approval approve run-3f2a... --reason \"change CHG-1234\""
    )]
    Approve {
        /// The run id.
        run: String,
        /// Why (kept with the decision).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny a run (it ends `Denied`; nothing changes).
    Deny {
        /// The run id.
        run: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}
