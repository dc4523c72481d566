//! `dsops`: the command-line interface.
//!
//! Every command parses its arguments with clap, loads what it needs (configuration, catalog),
//! and prints a table or, with `--output json`, JSON. Exit codes: 0 success, 1 runtime failure,
//! 2 invalid input.

#[macro_use]
mod output;
mod args;
mod args_governance;
mod backend;
mod commands;
mod context;
mod failure;
mod remote;

use clap::Parser;

use crate::args::{Cli, Command, OutputFormat};

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let json = cli.output == OutputFormat::Json;
    let writes_file = matches!(
        cli.command,
        Command::Evidence(commands::evidence::EvidenceCommand::Export { .. })
            | Command::Rotation(args::RotationCommand::Compliance(_))
    );
    if let (OutputFormat::File(file), false) = (&cli.output, writes_file) {
        let failure = failure::Failure::invalid(format!(
            "-o {}: this command prints its result; use -o table or -o json",
            file.display()
        ));
        output::print_failure(&failure, false);
        std::process::exit(failure.exit_code());
    }
    let telemetry = dsops_telemetry::init(
        "dsops",
        dsops_telemetry::Logs {
            default_filter: "info",
            stderr: std::env::var_os("RUST_LOG").is_some(),
        },
    );
    let span = dsops_telemetry::span(|| tracing::info_span!("dsops", command = %command_words()));
    let result = span.in_scope(|| run(&cli));
    drop(span);
    telemetry.shutdown();
    if let Err(failure) = result {
        output::print_failure(&failure, json);
        std::process::exit(failure.exit_code());
    }
}

/// The command's words (`rotate`, `reports token create`) for its span: the leading arguments
/// that look like subcommand names, never a flag's value or a token.
fn command_words() -> String {
    std::env::args()
        .skip(1)
        .take_while(|a| {
            a.starts_with(|c: char| c.is_ascii_lowercase())
                && a.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        })
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cli: &Cli) -> Result<(), failure::Failure> {
    match &cli.command {
        Command::Validate => commands::validate::run(cli),
        Command::Plan(args) => block_on(commands::plan::run(cli, args)),
        Command::List(list) => commands::list::run(cli, list),
        Command::Describe(describe) => commands::describe::run(cli, describe),
        Command::Catalog(catalog) => commands::catalog::run(cli, catalog),
        Command::Apply(args) => block_on(commands::apply::run(cli, args)),
        Command::Cluster(command) => block_on(commands::cluster::run(cli, command)),
        Command::Agent(command) => block_on(commands::agent::run(cli, command)),
        Command::Operator(command) => block_on(commands::operator::run(cli, command)),
        Command::Approval(command) => block_on(commands::approval::run(cli, command)),
        Command::Review(command) => block_on(commands::approval::review(cli, command)),
        Command::Notification(command) => block_on(commands::approval::notifications(cli, command)),
        Command::Audit(command) => block_on(commands::audit::list(cli, command)),
        Command::Promotion(command) => block_on(commands::promotion::run(cli, command)),
        Command::Evidence(command) => block_on(commands::evidence::run(cli, command)),
        Command::Reports(command) => block_on(commands::reports::run(cli, command)),
        Command::Rotate(args) => block_on(commands::rotate::run(cli, args)),
        Command::Rotation(command) => block_on(commands::rotation::run(cli, command)),
        Command::Store(command) => commands::store::run(cli, command),
        Command::Get(args) => commands::secrets::get(cli, args),
        Command::Exec(args) => commands::secrets::exec(cli, args),
        Command::Completions { shell } => {
            commands::completions::run(*shell);
            Ok(())
        }
    }
}

/// Runs an async command on a small runtime (only commands that talk to a cluster need one).
pub(crate) fn block_on<F: std::future::Future<Output = Result<(), failure::Failure>>>(
    future: F,
) -> Result<(), failure::Failure> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
            failure::Failure::Runtime(anyhow::anyhow!("starting the async runtime: {e}"))
        })?;
    runtime.block_on(future)
}
