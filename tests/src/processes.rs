//! Control-plane clusters of real `dsops-server` processes (for SIGKILL tests and benchmarks).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsops_identity::Credentials;
use dsops_identity::{API_SERVER_NAME, client_config};
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_proto::wire::admin::{
    ClusterStatusRequest, ClusterStatusResponse, CreateJoinTokenRequest,
};
use tonic::transport::Channel;

/// A free loopback address (the port is released again for the process to bind).
pub fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("address").to_string()
}

/// One node process.
#[derive(Debug)]
pub struct NodeProcess {
    /// Its address.
    pub address: String,
    /// Its data directory.
    pub dir: PathBuf,
    child: Option<Child>,
}

/// A cluster of `dsops-server` processes; killed when dropped.
#[derive(Debug)]
pub struct ProcessCluster {
    binary: PathBuf,
    root: tempfile::TempDir,
    /// The nodes, by id (1-based, in join order).
    pub nodes: Vec<NodeProcess>,
    /// The admin credentials.
    pub credentials: Credentials,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn run_ok(binary: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(binary).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "dsops-server {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl ProcessCluster {
    /// Starts `n` nodes (init, then join) and waits until the leader sees the voters it should.
    pub async fn start(binary: &Path, n: usize) -> anyhow::Result<ProcessCluster> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = tempfile::tempdir()?;
        let first = root.path().join("n1");
        let address = free_address();
        let out = run_ok(
            binary,
            &["init", "--data-dir", &first.to_string_lossy(), "--listen", &address],
        )?;
        let credentials = Credentials::read(&first.join("admin")).map_err(anyhow::Error::msg)?;
        let mut cluster =
            ProcessCluster { binary: binary.to_path_buf(), root, nodes: Vec::new(), credentials };
        cluster.nodes.push(NodeProcess { address, dir: first, child: None });
        cluster.spawn(1)?;
        cluster.wait_status(1, Duration::from_secs(20)).await?;
        let mut token = out
            .lines()
            .find_map(|l| l.strip_prefix("join token (valid 1h, single use): "))
            .map(str::to_owned);
        for i in 2..=n {
            let token = match token.take() {
                Some(token) => token,
                None => {
                    let leader = cluster.leader_address().await?;
                    let request = CreateJoinTokenRequest {
                        request_id: format!("process-cluster-token-{i:04}"),
                        ttl_seconds: 600,
                    };
                    cluster.admin(&leader).create_join_token(request).await?.into_inner().token
                }
            };
            let dir = cluster.root.path().join(format!("n{i}"));
            let address = free_address();
            let peer = cluster.nodes[0].address.clone();
            run_ok(
                &cluster.binary,
                &[
                    "join",
                    "--data-dir",
                    &dir.to_string_lossy(),
                    "--listen",
                    &address,
                    "--peer",
                    &peer,
                    "--token",
                    &token,
                ],
            )?;
            cluster.nodes.push(NodeProcess { address, dir, child: None });
            cluster.spawn(i as u64)?;
        }
        cluster
            .wait_status(dsops_control_plane::node::target_voters(n), Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    /// Starts (or restarts) node `id`.
    pub fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let node = &mut self.nodes[id as usize - 1];
        let log = std::fs::File::create(node.dir.with_extension("log"))?;
        let child = Command::new(&self.binary)
            .arg("run")
            .arg("--data-dir")
            .arg(&node.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(id as usize - 1)?.child.as_ref().map(Child::id)
    }

    /// The id of the node at `address`.
    pub fn id_of(&self, address: &str) -> Option<u64> {
        self.nodes.iter().position(|n| n.address == address).map(|i| i as u64 + 1)
    }

    /// Kills node `id` with SIGKILL.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[id as usize - 1].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// An admin client for an address.
    pub fn admin(&self, address: &str) -> AdminClient<Channel> {
        let tls = client_config(&self.credentials.ca_pem, Some(&self.credentials.identity))
            .expect("client TLS");
        AdminClient::new(dsops_identity::channel(address, API_SERVER_NAME, tls).expect("channel"))
    }

    /// Asks the running nodes until one answers as leader with `voters` voters.
    pub async fn wait_status(
        &self,
        voters: usize,
        deadline: Duration,
    ) -> anyhow::Result<ClusterStatusResponse> {
        let started = Instant::now();
        loop {
            for node in self.nodes.iter().filter(|n| n.child.is_some()) {
                if let Ok(status) =
                    self.admin(&node.address).cluster_status(ClusterStatusRequest {}).await
                {
                    let status = status.into_inner();
                    if status.leader_id != 0
                        && status
                            .members
                            .iter()
                            .filter(|m| m.role() != dsops_proto::wire::admin::MemberRole::Learner)
                            .count()
                            == voters
                    {
                        return Ok(status);
                    }
                }
            }
            anyhow::ensure!(
                started.elapsed() < deadline,
                "no leader with {voters} voters within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The leader's address.
    pub async fn leader_address(&self) -> anyhow::Result<String> {
        let status = self.wait_status(self.voters(), Duration::from_secs(20)).await?;
        Ok(status
            .members
            .iter()
            .find(|m| m.id == status.leader_id)
            .map(|m| m.address.clone())
            .unwrap_or_default())
    }

    /// How many voters the cluster should have.
    pub fn voters(&self) -> usize {
        dsops_control_plane::node::target_voters(self.nodes.len())
    }
}
