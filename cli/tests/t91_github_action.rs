//! The GitHub Action in `deploy/github-action/action.yml`, run as a runner would run its step:
//! its `run` script under bash, with the inputs in the environment the action maps them to and
//! the `dsops` binary, against a real cluster with an enrolled agent. It rotates what it is asked
//! to, fails the job when a rotation fails, writes its output for later steps, and leaves no
//! credential behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use dsops_tests::TestCluster;
use dsops_tests::agents::{enrolled_agent, token_project};
use std::path::{Path, PathBuf};

/// The step's `run:` script (the lines of the block scalar after `run: |`).
fn action_script() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("deploy/github-action/action.yml")).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "run: |").skip(1);
    let indent = "        ";
    let mut script = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix(indent) {
            Some(rest) => script.push_str(&format!("{rest}\n")),
            None if line.trim().is_empty() => script.push('\n'),
            None => break,
        }
    }
    assert!(script.contains("rotate()"), "{script}");
    script
}

/// Runs the action with `strategy` and `keys`; (exit code, stdout+stderr, GITHUB_OUTPUT).
async fn run_action(
    address: &str,
    credentials: &Path,
    temp: &Path,
    strategy: &str,
    keys: &str,
) -> (Option<i32>, String, String) {
    let read = |name: &str| std::fs::read_to_string(credentials.join(name)).unwrap();
    let output_file = temp.join("github-output");
    std::fs::write(&output_file, "").unwrap();
    let mut command = std::process::Command::new("bash");
    command
        .arg("-c")
        .arg(action_script())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DSOPS_ENVIRONMENT", "prod")
        .env("DSOPS_STRATEGY", strategy)
        .env("DSOPS_KEYS", keys)
        .env("DSOPS_SERVER", address)
        .env("DSOPS_CA", read("ca.pem"))
        .env("DSOPS_CERT", read("operator.pem"))
        .env("DSOPS_KEY", read("operator.key"))
        .env("DSOPS_REASON", "GitHub Actions: acme/app run 42")
        .env("DSOPS_BIN", env!("CARGO_BIN_EXE_dsops"))
        .env("RUNNER_TEMP", temp)
        .env("GITHUB_OUTPUT", &output_file)
        .env("NO_COLOR", "1");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text, std::fs::read_to_string(&output_file).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_action_rotates_through_a_cluster_and_fails_the_job_on_failure() {
    let (project, _dir) = token_project(2);
    let cluster = TestCluster::start(1).await;
    project.apply(&cluster).await;
    let address = cluster.address(cluster.leader().await).to_owned();
    let agent = enrolled_agent(&project, &cluster, "a", "default").await;
    let credentials = cluster.data_dir(1).admin();
    let temp = tempfile::tempdir().unwrap();

    let (code, text, output) =
        run_action(&address, &credentials, temp.path(), "keys", "API_TOKEN_0 API_TOKEN_1").await;
    assert_eq!(code, Some(0), "{text}");
    assert!(output.starts_with("result<<DSOPS_EOF\n"), "{output}");
    let body = output.trim_start_matches("result<<DSOPS_EOF\n");
    let body = body.split("DSOPS_EOF").next().unwrap();
    let documents: Vec<serde_json::Value> = serde_json::Deserializer::from_str(body)
        .into_iter::<serde_json::Value>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(documents.len(), 2, "one per key: {body}");
    for (n, document) in documents.iter().enumerate() {
        let row = &document.as_array().unwrap()[0];
        assert_eq!(row["secret"], format!("prod/API_TOKEN_{n}"), "{document}");
        assert_eq!(row["state"], "Completed", "{document}");
    }
    // The credentials it wrote for the step are gone.
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("dsops."))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A key that does not exist: dsops fails, and so does the job.
    let (code, text, _) =
        run_action(&address, &credentials, temp.path(), "keys", "NO_SUCH_KEY").await;
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("NO_SUCH_KEY"), "{text}");
    // A strategy the action does not know is refused before anything runs.
    let (code, text, _) = run_action(&address, &credentials, temp.path(), "sometimes", "").await;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("::error::strategy must be all-due, all or keys"), "{text}");

    agent.stop().await;
    cluster.shutdown().await;
}
