//! Printing: tables for people, JSON for scripts, diagnostics on standard error.

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use dsops_config::document::{Diagnostic, Severity};
use serde::Serialize;

use crate::failure::Failure;

/// Like `println!`, but a closed standard output (`dsops list services | head`) ends the program
/// quietly with status 0 instead of a panic.
macro_rules! out {
    () => {
        $crate::output::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

/// Writes one line to standard output (see [`out!`]).
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{args}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

/// A table with the house look: no borders, bold-free header, wrapped to the terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}

/// Prints a table (no trailing spaces). Cells hold text from agents, servers and programs, so
/// control characters (terminal escapes among them) are shown escaped, never sent to the terminal.
pub fn print_table(table: &Table) {
    for line in table.to_string().lines() {
        out!("{}", dsops_cli::follow::printable(line.trim_end()));
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    out!("{text}");
    Ok(())
}

/// Prints warnings to standard error.
pub fn print_warnings(warnings: &[Diagnostic]) {
    for warning in warnings.iter().filter(|d| d.severity == Severity::Warning) {
        eprintln!("{warning}");
    }
}

/// Prints a failure: diagnostics and a summary on standard error, or a JSON document on
/// standard output with `--output json`.
pub fn print_failure(failure: &Failure, json: bool) {
    match failure {
        Failure::Invalid { diagnostics, message } => {
            let errors = diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
            if json {
                let body = serde_json::json!({
                    "ok": false,
                    "error": message.clone().unwrap_or_else(|| format!("{errors} error(s)")),
                    "diagnostics": diagnostics,
                });
                out!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
                return;
            }
            for diagnostic in diagnostics {
                eprintln!("{diagnostic}");
            }
            match message {
                Some(message) => eprintln!("error: {}", dsops_cli::follow::printable(message)),
                None => eprintln!(
                    "error: {errors} problem{} found; nothing was changed",
                    if errors == 1 { "" } else { "s" }
                ),
            }
        }
        Failure::Runtime(error) => {
            if json {
                let body = serde_json::json!({ "ok": false, "error": format!("{error:#}") });
                out!("{}", serde_json::to_string_pretty(&body).unwrap_or_default());
            } else {
                eprintln!("error: {}", dsops_cli::follow::printable(&format!("{error:#}")));
            }
        }
    }
}
