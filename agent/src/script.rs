//! The `script` strategy's contract: a user program, named in the agent's own configuration, run
//! once per step with one JSON request on standard input, answering one JSON object on standard
//! output. The agent never runs a command it was sent; only the one its configuration names.
//!
//! Request: `{"version": 1, "step": "apply"|"verify"|"retire"|"rollback"|"check",
//! "checked_step": "apply"|... (check only), "run_id", "generation", "env", "key",
//! "value": the run's new value, "current": the current value or null}`.
//! Answer: `{"outcome": "succeeded"|"not_applied"|"retryable"|"indeterminate", "detail": "..."}`.
//! A program that exits non-zero, answers something else, or outlives its timeout is classed as
//! not knowing (indeterminate) for steps that change things and retryable for those that only
//! look. Its standard error is never forwarded (it could hold a value); a detail that contains
//! one of the values is replaced by `***`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dsops_proto::domain::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::secret::SecretValue;

/// A script service, as the agent's configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptSpec {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// How long one call may take.
    pub timeout: Duration,
    /// Where it runs.
    pub working_dir: Option<PathBuf>,
}

/// One call of the program.
#[derive(Debug)]
pub struct ScriptCall<'a> {
    /// The step.
    pub step: &'a str,
    /// For a check: the step checked.
    pub checked_step: Option<&'a str>,
    /// The run.
    pub run_id: &'a str,
    /// Its generation.
    pub generation: u64,
    /// The environment.
    pub env: &'a str,
    /// The variable.
    pub key: &'a str,
    /// The run's new value.
    pub value: &'a SecretValue,
    /// The current value, if any.
    pub current: Option<&'a SecretValue>,
    /// Whether the step changes things (a failure to answer is then indeterminate).
    pub changes: bool,
}

fn outcome(text: &str) -> Option<Outcome> {
    Some(match text {
        "succeeded" => Outcome::Succeeded,
        "not_applied" => Outcome::NotApplied,
        "retryable" => Outcome::Retryable,
        "indeterminate" => Outcome::Indeterminate,
        _ => return None,
    })
}

/// Runs the program for `call`: its outcome and a detail safe to report.
pub async fn run(spec: &ScriptSpec, call: &ScriptCall<'_>) -> (Outcome, String) {
    let unknown = if call.changes { Outcome::Indeterminate } else { Outcome::Retryable };
    let Some((program, args)) = spec.command.split_first() else {
        return (Outcome::Refused, "the script service has an empty command".to_owned());
    };
    let request = serde_json::json!({
        "version": 1,
        "step": call.step,
        "checked_step": call.checked_step,
        "run_id": call.run_id,
        "generation": call.generation,
        "env": call.env,
        "key": call.key,
        "value": call.value.expose(),
        "current": call.current.map(SecretValue::expose),
    });
    let input = Zeroizing::new(request.to_string());
    drop(request);
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return (Outcome::Retryable, format!("cannot start {program}: {error}")),
    };
    let exchange = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).await?;
        }
        let mut output = Vec::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout.read_to_end(&mut output).await?;
        }
        let status = child.wait().await?;
        std::io::Result::Ok((status, output))
    };
    let (status, output) = match tokio::time::timeout(spec.timeout, exchange).await {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => return (unknown, format!("{program}: {error}")),
        Err(_) => return (unknown, format!("{program} did not answer within {:?}", spec.timeout)),
    };
    let output = Zeroizing::new(output);
    if !status.success() {
        return (unknown, format!("{program} exited with {status}"));
    }
    let answer: serde_json::Value = match serde_json::from_slice(&output) {
        Ok(answer) => answer,
        Err(_) => return (unknown, format!("{program} did not answer a JSON object")),
    };
    let detail = answer.get("detail").and_then(|d| d.as_str()).unwrap_or_default().to_owned();
    let leaks = [Some(call.value), call.current]
        .into_iter()
        .flatten()
        .any(|v| !v.is_empty() && detail.contains(v.expose()));
    let detail = if leaks { "***".to_owned() } else { detail };
    match answer.get("outcome").and_then(|o| o.as_str()).and_then(outcome) {
        Some(outcome) => (outcome, detail),
        None => (unknown, format!("{program} answered no known outcome")),
    }
}
