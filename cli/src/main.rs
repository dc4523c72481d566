//! `dsops`: the command-line interface.
//!
//! Every command parses its arguments with clap, loads what it needs (configuration, catalog),
//! and prints a table or, with `--output json`, JSON. Exit codes: 0 success, 1 runtime failure,
//! 2 invalid input.

#[macro_use]
mod output;
mod args;
mod commands;
mod context;
mod failure;

use clap::Parser;

use crate::args::{Cli, Command, OutputFormat};

fn main() {
    let cli = Cli::parse();
    let json = cli.output == OutputFormat::Json;
    let result = match &cli.command {
        Command::Validate => commands::validate::run(&cli),
        Command::Plan(args) => commands::plan::run(&cli, args),
        Command::List(list) => commands::list::run(&cli, list),
        Command::Describe(describe) => commands::describe::run(&cli, describe),
        Command::Catalog(catalog) => commands::catalog::run(&cli, catalog),
        Command::Completions { shell } => {
            commands::completions::run(*shell);
            Ok(())
        }
    };
    if let Err(failure) = result {
        output::print_failure(&failure, json);
        std::process::exit(failure.exit_code());
    }
}
