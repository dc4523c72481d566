//! `dsops-bench-status`: `dsops rotation status --env` over a large environment. A 3-node
//! cluster (in-process, mutual TLS on loopback) stores a configuration with `--secrets` random
//! secrets (default 10,000) in one environment; then the status of that environment is read the
//! way the CLI reads it (pages of 10,000 over the admin API) and a single page of 1,000, each
//! `--samples` times. Prints the apply time and the configuration's size, and the median and
//! worst read times; asserts nothing.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dsops_cli::embedded::random_id;
use dsops_proto::wire::admin as wire;
use dsops_tests::TestCluster;

fn parse_args() -> anyhow::Result<(usize, usize)> {
    let (mut secrets, mut samples) = (10_000, 7);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--secrets" => secrets = value()?.parse()?,
            "--samples" => samples = value()?.parse()?,
            "--help" | "-h" => {
                println!("dsops-bench-status [--secrets N] [--samples N]");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(secrets > 0 && samples > 0, "--secrets and --samples must be positive");
    Ok((secrets, samples))
}

/// One environment of `n` random secrets, written compactly (one line each).
fn configuration(n: usize) -> String {
    let mut yaml = String::from("version: 1\nsecretStores:\n  l: { type: file }\nenvs:\n  big:\n");
    for i in 0..n {
        let _ = writeln!(
            yaml,
            "    S{i:06}: {{ from: {{ store: \"store://l/s{i}#v\" }}, rotation: {{ strategy: random }} }}"
        );
    }
    yaml
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:7.1} ms, worst {:7.1} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (secrets, samples) = parse_args()?;
    let yaml = configuration(secrets);
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let mut admin = cluster.admin_client(leader).max_decoding_message_size(64 << 20);
    let started = Instant::now();
    admin
        .apply_config(wire::ApplyConfigRequest {
            request_id: random_id(),
            config_yaml: yaml.clone(),
            config_path: "dsops.yaml".into(),
            catalog_files: Default::default(),
            expected_version: 0,
        })
        .await
        .context("apply")?;
    let apply = started.elapsed();
    println!(
        "{secrets} secrets in one environment: apply {:.0} ms ({:.2} MB of YAML)",
        apply.as_secs_f64() * 1e3,
        yaml.len() as f64 / 1e6
    );
    let request = |size: u32, token: String| wire::RotationStatusRequest {
        env: "big".into(),
        page_size: size,
        page_token: token,
    };
    let (mut whole, mut first) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        let started = Instant::now();
        let (mut rows, mut token) = (0, String::new());
        loop {
            let page = admin.rotation_status(request(10_000, token)).await?.into_inner();
            rows += page.secrets.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        whole.push(started.elapsed());
        anyhow::ensure!(rows == secrets, "{rows} rows for {secrets} secrets");
        let started = Instant::now();
        let page = admin.rotation_status(request(1_000, String::new())).await?.into_inner();
        first.push(started.elapsed());
        anyhow::ensure!(
            page.secrets.len() == secrets.min(1_000),
            "a page of {}",
            page.secrets.len()
        );
    }
    println!("  rotation status, every secret (pages of 10,000): {}", summary(&mut whole));
    println!("  rotation status, one page of 1,000:            {}", summary(&mut first));
    cluster.shutdown().await;
    Ok(())
}
