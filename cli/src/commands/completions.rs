use clap::CommandFactory;

use crate::args::Cli;

/// Prints the completion script for `shell`.
pub fn run(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "dsops", &mut std::io::stdout());
}
