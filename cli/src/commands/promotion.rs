//! `dsops promotion status|halt|resume`: the waves in which a variable rotates stage by stage
//! (`rotation.promotion`), and stopping the line.

use clap::Subcommand;
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use crate::args::{Cli, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use crate::remote::{Remote, request_id};
use dsops_cli::follow::printable;

/// `dsops promotion ...`.
#[derive(Debug, Subcommand)]
pub enum PromotionCommand {
    /// Each promotion line's wave, stage by stage: done, rotating, soaking until T, waiting
    /// (for what), halted (why), failed, pending.
    Status {
        /// Only lines with a stage in this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only the line of this variable (or promotion group).
        #[arg(long)]
        key: Option<String>,
    },
    /// Stop the line: no new run or step of it starts once the halt is committed.
    #[command(
        after_help = "EXAMPLES:\n  dsops promotion halt --key DB_PASSWORD --reason \"INC-88: staging errors\"\n  dsops promotion halt --all --reason \"change freeze\""
    )]
    Halt {
        /// Every run, in a line or not.
        #[arg(long, conflicts_with = "key", required_unless_present = "key")]
        all: bool,
        /// The line: a variable rotating in several stages, or a promotion group.
        #[arg(long)]
        key: Option<String>,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Let a halted line (or, with --all, everything) go on.
    #[command(
        after_help = "EXAMPLES:\n  dsops promotion resume DB_PASSWORD --reason \"INC-88 fixed\"\n  dsops promotion resume --all --reason \"freeze over\""
    )]
    Resume {
        /// The line.
        #[arg(conflicts_with = "all", required_unless_present = "all")]
        key: Option<String>,
        /// The `halt --all`.
        #[arg(long)]
        all: bool,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
}

/// A stage, as printed.
#[derive(Debug, Serialize)]
struct StageRow {
    env: String,
    key: String,
    state: String,
    detail: String,
    run_id: String,
    until_unix: Option<i64>,
}

/// A line, as printed.
#[derive(Debug, Serialize)]
struct LineRow {
    line: String,
    wave: u64,
    halted: String,
    queued: bool,
    stages: Vec<StageRow>,
}

/// Runs `dsops promotion ...`.
pub async fn run(cli: &Cli, command: &PromotionCommand) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    match command {
        PromotionCommand::Status { env, key } => {
            let request = wire::PromotionStatusRequest {
                env: env.clone().unwrap_or_default(),
                key: key.clone().unwrap_or_default(),
            };
            let response = remote
                .call("promotion status", |mut c| {
                    let request = request.clone();
                    async move { c.promotion_status(request).await }
                })
                .await?;
            let lines: Vec<LineRow> = response.lines.iter().map(line_row).collect();
            if cli.output == OutputFormat::Json {
                #[derive(Serialize)]
                struct Status<'a> {
                    halted_all: &'a str,
                    lines: &'a [LineRow],
                }
                return print_json(&Status { halted_all: &response.halted_all, lines: &lines });
            }
            if !response.halted_all.is_empty() {
                out!("EVERYTHING IS HALTED: {}", printable(&response.halted_all));
            }
            if lines.is_empty() {
                out!("no promotion line (a variable in two or more stages of rotation.promotion)");
                return Ok(());
            }
            let mut t = table(&["LINE", "WAVE", "STAGE", "STATE", "DETAIL", "RUN"]);
            for line in &lines {
                for (i, stage) in line.stages.iter().enumerate() {
                    let (name, wave) = if i == 0 {
                        (line.line.clone(), line.wave.to_string())
                    } else {
                        (String::new(), String::new())
                    };
                    t.add_row(vec![
                        name,
                        wave,
                        format!("{}/{}", stage.env, stage.key),
                        stage.state.clone(),
                        printable(&stage.detail).into_owned(),
                        stage.run_id.clone(),
                    ]);
                }
            }
            print_table(&t);
            for line in &lines {
                if !line.halted.is_empty() {
                    out!(
                        "line {} is HALTED: {}; `dsops promotion resume {} --reason ...` lets it go on",
                        line.line,
                        printable(&line.halted),
                        line.line
                    );
                }
                if line.queued {
                    out!("line {}: a new wave is queued behind wave {}", line.line, line.wave);
                }
            }
            Ok(())
        }
        PromotionCommand::Halt { all, key, reason } => {
            change(cli, &remote, false, *all, key.as_deref(), reason).await
        }
        PromotionCommand::Resume { key, all, reason } => {
            change(cli, &remote, true, *all, key.as_deref(), reason).await
        }
    }
}

async fn change(
    cli: &Cli,
    remote: &Remote,
    resume: bool,
    all: bool,
    line: Option<&str>,
    reason: &str,
) -> Result<(), Failure> {
    if reason.trim().is_empty() {
        return Err(Failure::invalid("say why (--reason TEXT)"));
    }
    let request = wire::HaltPromotionRequest {
        line: line.unwrap_or_default().to_owned(),
        all,
        reason: reason.to_owned(),
        request_id: request_id(),
    };
    let what = if resume { "resume promotion" } else { "halt promotion" };
    let response = remote
        .call(what, |mut c| {
            let request = request.clone();
            async move {
                if resume {
                    c.resume_promotion(request).await
                } else {
                    c.halt_promotion(request).await
                }
            }
        })
        .await?;
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({ "line": response.line, "halted": !resume }));
    }
    match (resume, response.line.as_str()) {
        (false, "*") => {
            out!("halted: no new run or step starts anywhere until `dsops promotion resume --all`")
        }
        (false, line) => out!(
            "halted line {line}: no new run or step of it starts until `dsops promotion resume {line}`"
        ),
        (true, "*") => out!("resumed: runs go on"),
        (true, line) => out!("resumed line {line}"),
    }
    Ok(())
}

fn line_row(line: &wire::PromotionLineStatus) -> LineRow {
    LineRow {
        line: line.line.clone(),
        wave: line.wave,
        halted: line.halted.clone(),
        queued: line.queued,
        stages: line
            .stages
            .iter()
            .map(|s| StageRow {
                env: s.env.clone(),
                key: s.key.clone(),
                state: s.state.clone(),
                detail: s.detail.clone(),
                run_id: s.run_id.clone(),
                until_unix: s.until.as_ref().map(|t| t.seconds),
            })
            .collect(),
    }
}
