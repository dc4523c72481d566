//! `dsops-bench-raft`: replicated write throughput and commit latency of the dsops control plane
//! (1 and 3 `dsops-server` processes on loopback, durable storage, mutual TLS) against a 3-node
//! etcd cluster (also mutual TLS, fsync on), and leader failover time. Figures are printed, never
//! asserted. `scripts/bench-raft.sh` builds release binaries, installs etcd and runs this.

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use dsops_control_plane::pki::ClusterPki;
use dsops_identity::client_config;
use dsops_proto::wire::admin::CreateJoinTokenRequest;
use dsops_tests::etcd::PutRequest;
use dsops_tests::etcd::kv_client::KvClient;
use dsops_tests::processes::{ProcessCluster, free_address};

struct Args {
    server: PathBuf,
    etcd: Option<PathBuf>,
    seconds: u64,
    trials: usize,
    concurrency: Vec<usize>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        server: PathBuf::from("target/release/dsops-server"),
        etcd: None,
        seconds: 5,
        trials: 20,
        concurrency: vec![1, 16, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--server-bin" => args.server = PathBuf::from(value()?),
            "--etcd-bin" => args.etcd = Some(PathBuf::from(value()?)),
            "--seconds" => args.seconds = value()?.parse()?,
            "--trials" => {
                args.trials = value()?.parse()?;
                anyhow::ensure!(args.trials > 0, "--trials must be at least 1");
            }
            "--concurrency" => {
                args.concurrency = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--help" | "-h" => {
                println!(
                    "dsops-bench-raft [--server-bin PATH] [--etcd-bin PATH] [--seconds N] [--trials N] [--concurrency 1,16,64]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(args)
}

/// Throughput and latency of one run.
#[derive(Debug, Clone, Copy)]
struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// Runs `clients` concurrent loops of `write` for `duration`.
async fn load<F, Fut>(clients: usize, duration: Duration, write: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let write = Arc::new(write);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let write = write.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut seq = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match write(client, seq).await {
                    Ok(()) => latencies.push(t0.elapsed()),
                    Err(_) => errors += 1,
                }
                seq += 1;
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("load task");
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures { per_second: all.len() as f64 / elapsed, p50: pick(0.50), p99: pick(0.99), errors }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn dsops_load(args: &Args, nodes: usize) -> anyhow::Result<Vec<(usize, Figures)>> {
    let cluster = ProcessCluster::start(&args.server, nodes).await?;
    let leader = cluster.leader_address().await?;
    let mut results = Vec::new();
    for &clients in &args.concurrency {
        let channels: Vec<_> = (0..clients).map(|_| cluster.admin(&leader)).collect();
        let channels = Arc::new(channels);
        let figures = load(clients, Duration::from_secs(args.seconds), move |client, seq| {
            let mut admin = channels[client].clone();
            async move {
                let request = CreateJoinTokenRequest {
                    request_id: format!("bench-{nodes}-{clients:03}-{client:03}-{seq:010}"),
                    ttl_seconds: 60,
                };
                admin.create_join_token(request).await.map(|_| ()).map_err(|e| e.to_string())
            }
        })
        .await;
        results.push((clients, figures));
    }
    Ok(results)
}

/// A 3-member etcd cluster with TLS for clients and peers and client-certificate checks.
struct Etcd {
    children: Vec<Child>,
    client_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn start_etcd(binary: &PathBuf, pki: &ClusterPki) -> anyhow::Result<Etcd> {
    let dir = tempfile::tempdir()?;
    let cert = pki.issue_node(1, &["127.0.0.1".into(), "localhost".into()])?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let ca = write("ca.pem", &pki.peer.cert_pem)?;
    let crt = write("etcd.pem", &cert.cert_pem)?;
    let key = write("etcd.key", &cert.key_pem)?;
    let peers: Vec<String> = (0..3).map(|_| free_address()).collect();
    let clients: Vec<String> = (0..3).map(|_| free_address()).collect();
    let initial: Vec<String> =
        peers.iter().enumerate().map(|(i, p)| format!("e{i}=https://{p}")).collect();
    let mut children = Vec::new();
    for i in 0..3 {
        let data = dir.path().join(format!("e{i}"));
        let log = std::fs::File::create(dir.path().join(format!("e{i}.log")))?;
        let child = Command::new(binary)
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &format!("https://{}", clients[i]),
                "--advertise-client-urls",
                &format!("https://{}", clients[i]),
            ])
            .args([
                "--listen-peer-urls",
                &format!("https://{}", peers[i]),
                "--initial-advertise-peer-urls",
                &format!("https://{}", peers[i]),
            ])
            .args([
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "dsops-bench",
            ])
            .arg("--cert-file")
            .arg(&crt)
            .arg("--key-file")
            .arg(&key)
            .arg("--trusted-ca-file")
            .arg(&ca)
            .arg("--client-cert-auth")
            .arg("--peer-cert-file")
            .arg(&crt)
            .arg("--peer-key-file")
            .arg(&key)
            .arg("--peer-trusted-ca-file")
            .arg(&ca)
            .arg("--peer-client-cert-auth")
            .args([
                "--logger",
                "zap",
                "--log-level",
                "error",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        children.push(child);
    }
    let etcd = Etcd { children, client_urls: clients, _dir: dir };
    // Ready when a put commits.
    let started = Instant::now();
    let tls = client_config(&pki.peer.cert_pem, Some(&cert))?;
    loop {
        let channel = dsops_identity::channel(&etcd.client_urls[0], "127.0.0.1", tls.clone())?;
        let put = KvClient::new(channel)
            .put(PutRequest { key: b"ready".to_vec(), value: b"1".to_vec(), ..Default::default() })
            .await;
        if put.is_ok() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "etcd did not become ready: {put:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(etcd)
}

async fn etcd_load(args: &Args, binary: &PathBuf) -> anyhow::Result<Vec<(usize, Figures)>> {
    let (pki, _) = ClusterPki::generate("etcd-bench")?;
    let etcd = start_etcd(binary, &pki).await?;
    let identity = pki.issue_node(2, &["127.0.0.1".into()])?;
    let tls = client_config(&pki.peer.cert_pem, Some(&identity))?;
    let mut results = Vec::new();
    for &clients in &args.concurrency {
        let channels: Vec<_> = (0..clients)
            .map(|i| {
                dsops_identity::channel(&etcd.client_urls[i % 3], "127.0.0.1", tls.clone())
                    .map(KvClient::new)
            })
            .collect::<Result<_, _>>()?;
        let channels = Arc::new(channels);
        let figures = load(clients, Duration::from_secs(args.seconds), move |client, seq| {
            let mut kv = channels[client].clone();
            async move {
                let request = PutRequest {
                    key: format!("bench/{client:03}/{seq:010}").into_bytes(),
                    value: vec![b'x'; 64],
                    ..Default::default()
                };
                kv.put(request).await.map(|_| ()).map_err(|e| e.to_string())
            }
        })
        .await;
        results.push((clients, figures));
    }
    drop(etcd);
    Ok(results)
}

async fn failover(args: &Args) -> anyhow::Result<Vec<Duration>> {
    let mut cluster = ProcessCluster::start(&args.server, 3).await?;
    let mut times = Vec::new();
    for trial in 0..args.trials {
        // Three voters, and every follower holding all the leader has: a status taken while the
        // last voter's promotion is still on its way (a membership entry the other follower
        // lacks) would have the kill leave two nodes that cannot form a majority between them.
        let started = Instant::now();
        let status = loop {
            let status = cluster.wait_status(3, Duration::from_secs(30)).await?;
            if status.members.iter().all(|m| m.lag == 0) {
                break status;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "trial {trial}: the followers did not catch up with the leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let leader = status.leader_id;
        cluster.kill(leader)?;
        let killed_at = Instant::now();
        let survivors: Vec<String> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != leader)
            .map(|(_, n)| n.address.clone())
            .collect();
        let mut attempt = 0u64;
        'committed: loop {
            for address in &survivors {
                attempt += 1;
                let mut admin = cluster.admin(address);
                let mut request = tonic::Request::new(CreateJoinTokenRequest {
                    request_id: format!("failover-{trial:03}-{attempt:010}"),
                    ttl_seconds: 60,
                });
                request.set_timeout(Duration::from_millis(300));
                if admin.create_join_token(request).await.is_ok() {
                    break 'committed;
                }
            }
            anyhow::ensure!(
                killed_at.elapsed() < Duration::from_secs(30),
                "trial {trial}: no write committed within 30 s"
            );
        }
        times.push(killed_at.elapsed());
        // The next trial starts once the restarted node has caught up.
        cluster.spawn(leader)?;
    }
    Ok(times)
}

fn print(label: &str, results: &[(usize, Figures)]) {
    for (clients, f) in results {
        println!(
            "{label:<16} clients={clients:<3} writes/s={:>9.1} p50={:>7.2}ms p99={:>7.2}ms errors={}",
            f.per_second,
            ms(f.p50),
            ms(f.p99),
            f.errors
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = parse_args()?;
    println!(
        "# dsops raft benchmark: {} s per point, loopback, durable storage, mutual TLS",
        args.seconds
    );
    let one = dsops_load(&args, 1).await.context("dsops, 1 node")?;
    print("dsops 1 node", &one);
    let three = dsops_load(&args, 3).await.context("dsops, 3 nodes")?;
    print("dsops 3 nodes", &three);
    if let Some(etcd) = &args.etcd {
        let etcd_results = etcd_load(&args, etcd).await.context("etcd, 3 nodes")?;
        print("etcd 3 nodes", &etcd_results);
        for ((clients, ours), (_, theirs)) in three.iter().zip(&etcd_results) {
            println!(
                "ratio dsops/etcd 3 nodes clients={clients:<3} {:.2}x",
                ours.per_second / theirs.per_second.max(f64::MIN_POSITIVE)
            );
        }
    } else {
        println!("etcd: skipped (no --etcd-bin)");
    }
    let mut times = failover(&args).await.context("failover")?;
    times.sort_unstable();
    let p50 = times[times.len() / 2];
    let max = times.last().copied().unwrap_or_default();
    println!(
        "failover (SIGKILL leader -> next committed write) trials={} p50={:.0}ms max={:.0}ms",
        times.len(),
        ms(p50),
        ms(max)
    );
    Ok(())
}
