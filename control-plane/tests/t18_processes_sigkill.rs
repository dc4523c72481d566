//! Three real `dsops-server` processes; the leader is killed with SIGKILL. A new leader is
//! elected and every acknowledged configuration version is still there. `dsops-server health`
//! (the container health check) passes for a serving node and fails for the killed one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsops_identity::Credentials;
use dsops_identity::{API_SERVER_NAME, client_config};
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_proto::wire::admin::{
    ApplyConfigRequest, ClusterStatusRequest, ClusterStatusResponse, GetConfigRequest,
};

const SERVER: &str = env!("CARGO_BIN_EXE_dsops-server");

/// Kills its processes when dropped, so a failing test leaves nothing running.
struct Processes(Vec<(u64, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn server(args: &[&str]) -> String {
    let output = Command::new(SERVER).args(args).output().expect("run dsops-server");
    assert!(
        output.status.success(),
        "dsops-server {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn run(dir: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(SERVER)
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn dsops-server run")
}

fn admin(credentials: &Credentials, address: &str) -> AdminClient<tonic::transport::Channel> {
    let tls = client_config(&credentials.ca_pem, Some(&credentials.identity)).unwrap();
    AdminClient::new(dsops_identity::channel(address, API_SERVER_NAME, tls).unwrap())
}

/// The cluster status from the leader, asking each address in turn until one answers as leader
/// with `voters` voters (deadline 20 s).
async fn status_with(
    credentials: &Credentials,
    addresses: &[String],
    voters: usize,
) -> ClusterStatusResponse {
    let started = Instant::now();
    loop {
        for address in addresses {
            if let Ok(status) =
                admin(credentials, address).cluster_status(ClusterStatusRequest {}).await
            {
                let status = status.into_inner();
                let voting = status
                    .members
                    .iter()
                    .filter(|m| m.role() != dsops_proto::wire::admin::MemberRole::Learner)
                    .count();
                if status.leader_id != 0 && voting == voters {
                    return status;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader with {voters} voters within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(version: usize) -> String {
    format!(
        "version: 1\nsecretStores: {{ local: {{ type: file }} }}\nenvs:\n  dev:\n    K{version}: {{ from: {{ store: \"store://local/k{version}#v\" }}, rotation: {{ strategy: random }} }}\n"
    )
}

async fn apply(credentials: &Credentials, address: &str, n: usize) -> Result<u64, tonic::Status> {
    let request = ApplyConfigRequest {
        request_id: format!("sigkill-apply-{n:08}"),
        config_yaml: config(n),
        config_path: "dsops.yaml".into(),
        catalog_files: Default::default(),
        expected_version: 0,
    };
    admin(credentials, address).apply_config(request).await.map(|r| r.into_inner().version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_the_leader_of_three_processes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (0..3).map(|_| free_address()).collect();
    let dirs: Vec<_> = (1..=3).map(|i| root.path().join(format!("n{i}"))).collect();
    let init =
        server(&["init", "--data-dir", dirs[0].to_str().unwrap(), "--listen", &addresses[0]]);
    let token = init
        .lines()
        .find_map(|l| l.strip_prefix("join token (valid 1h, single use): "))
        .unwrap()
        .to_owned();
    let credentials = Credentials::read(&dirs[0].join("admin")).unwrap();
    let mut processes = Processes(vec![(1, run(&dirs[0], &root.path().join("n1.log")))]);
    status_with(&credentials, &addresses[..1], 1).await;

    for i in 1..3 {
        let token = if i == 1 {
            token.clone()
        } else {
            let request = dsops_proto::wire::admin::CreateJoinTokenRequest {
                request_id: "sigkill-token-0000001".into(),
                ttl_seconds: 600,
            };
            admin(&credentials, &addresses[0])
                .create_join_token(request)
                .await
                .unwrap()
                .into_inner()
                .token
        };
        server(&[
            "join",
            "--data-dir",
            dirs[i].to_str().unwrap(),
            "--listen",
            &addresses[i],
            "--peer",
            &addresses[0],
            "--token",
            &token,
        ]);
        processes
            .0
            .push((i as u64 + 1, run(&dirs[i], &root.path().join(format!("n{}.log", i + 1)))));
    }
    let status = status_with(&credentials, &addresses, 3).await;
    let leader = status.leader_id;
    let leader_address = status.members.iter().find(|m| m.id == leader).unwrap().address.clone();

    for n in 1..=5 {
        assert_eq!(apply(&credentials, &leader_address, n).await.unwrap(), n as u64);
    }

    let health = |id: u64| {
        let dir = &dirs[id as usize - 1];
        Command::new(SERVER).args(["health", "--data-dir"]).arg(dir).output().unwrap()
    };
    let healthy = health(leader);
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));
    let said = String::from_utf8_lossy(&healthy.stdout).into_owned();
    assert!(said.starts_with(&format!("healthy: node {leader} serving on")), "{said}");

    // SIGKILL (Child::kill sends SIGKILL on Unix): no shutdown code runs.
    let (_, child) = processes.0.iter_mut().find(|(id, _)| *id == leader).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let dead = health(leader);
    assert_eq!(dead.status.code(), Some(1));
    let said = String::from_utf8_lossy(&dead.stderr).into_owned();
    assert!(said.contains(&format!("error: health: node {leader} at")), "{said}");

    let survivors: Vec<String> =
        status.members.iter().filter(|m| m.id != leader).map(|m| m.address.clone()).collect();
    let started = Instant::now();
    let new_status = loop {
        // The dead leader still counts as a voter; wait for a new leader among the survivors.
        let status = status_with(&credentials, &survivors, 3).await;
        if status.leader_id != leader {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no new leader");
    };
    let new_leader_address =
        new_status.members.iter().find(|m| m.id == new_status.leader_id).unwrap().address.clone();
    let stored = admin(&credentials, &new_leader_address)
        .get_config(GetConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.version, 5, "acknowledged versions were lost");
    assert_eq!(stored.config_yaml, config(5));
    assert_eq!(apply(&credentials, &new_leader_address, 6).await.unwrap(), 6);
}
