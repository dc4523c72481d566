//! The `script` transport: the program named in the agent's configuration runs once per step,
//! with the request on standard input and the answer on standard output. Its standard error is
//! never forwarded (it could hold a value).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use dsops_proto::domain::StepOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::HookCall;

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

/// The longest answer read from a program.
const MAX_ANSWER: usize = 64 * 1024;

/// Runs the program for `call`: its outcome and a detail safe to report.
pub async fn run(spec: &ScriptSpec, call: &HookCall<'_>) -> (StepOutcome, String) {
    let unknown = call.unknown();
    let Some((program, args)) = spec.command.split_first() else {
        return (StepOutcome::Refused, "the script service has an empty command".to_owned());
    };
    let input = call.request();
    let mut command = tokio::process::Command::new(program);
    // The program gets its request on standard input and nothing from the agent's environment
    // (which may hold credentials of the host) but the search path.
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
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
        Err(error) => return (StepOutcome::Retryable, format!("cannot start {program}: {error}")),
    };
    let exchange = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).await?;
        }
        let mut output = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            // One byte over the limit tells an answer that is too long.
            stdout.take(MAX_ANSWER as u64 + 1).read_to_end(&mut output).await?;
            if output.len() > MAX_ANSWER {
                return Err(std::io::Error::other(format!(
                    "answered more than {MAX_ANSWER} bytes"
                )));
            }
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
    call.answer(program, &output)
}
