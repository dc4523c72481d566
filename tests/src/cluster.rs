//! `TestCluster`: N control-plane nodes in one process, over real tonic and real mutual TLS on
//! ports chosen by the OS, with certificates minted per cluster. Links between nodes can be
//! dropped, delayed or partitioned in either direction; nodes can be killed and restarted on
//! their data directories. Every wait has a deadline; nothing sleeps for a fixed time to "let
//! things settle".

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsops_control_plane::control::ControlPlane;
use dsops_control_plane::node::{DataDir, NodeOptions, RunningNode, init, join, start};
use dsops_control_plane::raft::{LinkAction, LinkFilter};
use dsops_identity::{API_SERVER_NAME, client_config};
use dsops_identity::{Credentials, JoinToken};
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_state::{Command, Response};
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// Link faults, shared by every node of a cluster.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<HashMap<(u64, u64), LinkAction>>,
}

impl LinkFilter for Faults {
    fn check(&self, from: u64, to: u64) -> LinkAction {
        self.rules
            .lock()
            .expect("faults lock")
            .get(&(from, to))
            .copied()
            .unwrap_or(LinkAction::Pass)
    }
}

impl Faults {
    fn set(&self, from: u64, to: u64, action: LinkAction) {
        let mut rules = self.rules.lock().expect("faults lock");
        if action == LinkAction::Pass {
            rules.remove(&(from, to));
        } else {
            rules.insert((from, to), action);
        }
    }
}

struct Slot {
    dir: DataDir,
    address: String,
    running: Option<RunningNode>,
}

/// A cluster of in-process nodes.
pub struct TestCluster {
    root: tempfile::TempDir,
    slots: BTreeMap<u64, Slot>,
    faults: Arc<Faults>,
    options: NodeOptions,
    admin: Credentials,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("nodes", &self.slots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Options for tests: short timeouts so elections take a fraction of a second, and no
/// scheduler (tests start the runs they check; the scheduler's own suite turns it on).
pub fn fast_options() -> NodeOptions {
    NodeOptions {
        heartbeat: Duration::from_millis(50),
        election_timeout: (Duration::from_millis(250), Duration::from_millis(500)),
        scheduler: false,
        // Refusal summaries reach the audit log within a second, so tests can wait for them.
        refusal_summary: Duration::from_millis(500),
        ..NodeOptions::default()
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A listener on `at` (`None`: a free loopback port) and its address.
async fn bind(at: Option<&str>) -> (TcpListener, String) {
    let at = at.unwrap_or("127.0.0.1:0");
    let listener = TcpListener::bind(at).await.unwrap_or_else(|e| panic!("bind {at}: {e}"));
    let address = listener.local_addr().expect("local address").to_string();
    (listener, address)
}

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TestCluster {
    /// Starts `n` nodes with [`fast_options`] and waits until all are voters (for n ≤ 5, odd).
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, fast_options()).await
    }

    /// Starts `n` nodes with the given options.
    pub async fn start_with(n: usize, options: NodeOptions) -> TestCluster {
        TestCluster::start_inner(n, options, &[]).await
    }

    /// Starts one node per address, listening there (fixtures that must record fixed ports).
    pub async fn start_at(addresses: &[String]) -> TestCluster {
        TestCluster::start_inner(addresses.len(), fast_options(), addresses).await
    }

    async fn start_inner(n: usize, mut options: NodeOptions, at: &[String]) -> TestCluster {
        install_provider();
        let faults = Arc::new(Faults::default());
        options.links = faults.clone();
        let root = tempfile::tempdir().expect("temporary directory");
        let first = DataDir::new(&root.path().join("node-1"));
        let (listener, address) = bind(at.first().map(String::as_str)).await;
        init(&first, &address, None).await.expect("init the first node");
        let admin = Credentials::read(&first.admin()).expect("admin credentials");
        let running = start(&first, Some(listener), options.clone()).await.expect("start node 1");
        let mut cluster = TestCluster { root, slots: BTreeMap::new(), faults, options, admin };
        cluster.slots.insert(1, Slot { dir: first, address, running: Some(running) });
        cluster.leader().await;
        for i in 1..n {
            cluster.add_node_at(at.get(i).map(String::as_str)).await;
        }
        let expected = dsops_control_plane::node::target_voters(n);
        cluster.wait_voters(expected).await;
        cluster
    }

    /// Joins one more node through the current leader and starts it; returns its id.
    pub async fn add_node(&mut self) -> u64 {
        self.add_node_at(None).await
    }

    /// A cluster of the data directories in `root` (`node-1`, `node-2`, ... as
    /// [`TestCluster::start`] lays them out, e.g. a copied fixture), none running yet: start
    /// each with [`TestCluster::restart`], on the address its `node.json` records. The admin
    /// credentials are node 1's.
    pub fn from_dirs(root: tempfile::TempDir) -> TestCluster {
        install_provider();
        let faults = Arc::new(Faults::default());
        let mut options = fast_options();
        options.links = faults.clone();
        let mut slots = BTreeMap::new();
        for index in 1.. {
            let dir = DataDir::new(&root.path().join(format!("node-{index}")));
            if !dir.is_initialized() {
                break;
            }
            let node = dir.read_node().expect("node.json");
            slots.insert(node.node_id, Slot { dir, address: node.listen, running: None });
        }
        assert!(!slots.is_empty(), "no node-1 in {}", root.path().display());
        let admin = Credentials::read(&root.path().join("node-1").join("admin"))
            .expect("node 1's admin credentials");
        TestCluster { root, slots, faults, options, admin }
    }

    /// The directory holding the nodes' data directories.
    pub fn root(&self) -> &std::path::Path {
        self.root.path()
    }

    async fn add_node_at(&mut self, at: Option<&str>) -> u64 {
        let leader = self.leader().await;
        let control = self.control(leader);
        let der = control.pki().peer.cert_der().expect("peer CA DER");
        let token = JoinToken::generate(&dsops_identity::fingerprint(&der));
        let expires = now_ms() + 600_000;
        let id = format!("token-{}", &token.secret[..32]);
        control
            .write(
                "test",
                &id,
                Command::CreateJoinToken {
                    token_hash: JoinToken::secret_hash(&token.secret),
                    expires_at_ms: expires,
                },
            )
            .await
            .expect("create a join token");
        let index = self.slots.len() + 1;
        let dir = DataDir::new(&self.root.path().join(format!("node-{index}")));
        let (listener, address) = bind(at).await;
        let leader_address = self.slots[&leader].address.clone();
        let node_id =
            join(&dir, &address, None, &leader_address, &token.encode()).await.expect("join");
        let running =
            start(&dir, Some(listener), self.options.clone()).await.expect("start the joined node");
        self.slots.insert(node_id, Slot { dir, address, running: Some(running) });
        node_id
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.slots.keys().copied().collect()
    }

    /// The ids of running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.slots.iter().filter(|(_, s)| s.running.is_some()).map(|(id, _)| *id).collect()
    }

    /// A running node's control plane.
    pub fn control(&self, id: u64) -> &ControlPlane {
        &self.slots[&id]
            .running
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .control
    }

    /// How many TLS handshakes a running node's listener completed.
    pub fn tls_handshakes(&self, id: u64) -> u64 {
        self.slots[&id].running.as_ref().map_or(0, |node| node.tls_handshakes())
    }

    /// Where a running node's reports API listens, if it serves one.
    pub fn reports_address(&self, id: u64) -> Option<std::net::SocketAddr> {
        self.slots[&id].running.as_ref().and_then(|node| node.reports_address)
    }

    /// A node's address.
    pub fn address(&self, id: u64) -> &str {
        &self.slots[&id].address
    }

    /// A node's data directory.
    pub fn data_dir(&self, id: u64) -> &DataDir {
        &self.slots[&id].dir
    }

    /// The operator credentials.
    pub fn admin(&self) -> &Credentials {
        &self.admin
    }

    /// Waits (5 s) until every running node reports the same leader, itself running; returns it.
    pub async fn leader(&self) -> u64 {
        self.leader_among(&self.running()).await
    }

    /// Waits (5 s) until the given running nodes agree on a leader among them.
    pub async fn leader_among(&self, nodes: &[u64]) -> u64 {
        wait_for("an agreed leader", Duration::from_secs(5), || async {
            let leaders: Vec<Option<u64>> =
                nodes.iter().map(|id| self.control(*id).metrics().current_leader).collect();
            let first = leaders.first().copied().flatten()?;
            (nodes.contains(&first) && leaders.iter().all(|l| *l == Some(first))).then_some(first)
        })
        .await
    }

    /// Waits (10 s) until the membership has `count` voters, as the leader sees it.
    pub async fn wait_voters(&self, count: usize) {
        wait_for(&format!("{count} voters"), Duration::from_secs(10), || async {
            let leader = self.control(self.leader().await).metrics();
            let voters = leader.membership_config.membership().voter_ids().count();
            // One voter set, and that membership is committed (applied), not merely proposed.
            let settled = leader.membership_config.membership().get_joint_config().len() == 1
                && leader.membership_config.log_id() <= &leader.last_applied;
            (voters == count && settled).then_some(())
        })
        .await;
        // Every running voter then receives the issuing CA keys from the leader.
        wait_for("the voters' issuing keys", Duration::from_secs(10), || async {
            let leader = self.control(self.leader().await).metrics();
            let voters: Vec<u64> = leader.membership_config.membership().voter_ids().collect();
            voters
                .iter()
                .filter(|id| self.slots.get(id).is_some_and(|s| s.running.is_some()))
                .all(|id| self.control(*id).pki().agent.can_issue())
                .then_some(())
        })
        .await;
    }

    /// Writes a command through the leader (retrying while leadership moves, up to 10 s).
    pub async fn write(&self, request_id: &str, command: Command) -> Response {
        wait_for(&format!("write {request_id}"), Duration::from_secs(10), || async {
            let leader = self.leader().await;
            self.control(leader).write("test", request_id, command.clone()).await.ok()
        })
        .await
    }

    /// Kills a node (its server and raft stop; its data directory stays).
    pub async fn kill(&mut self, id: u64) {
        let running = self
            .slots
            .get_mut(&id)
            .and_then(|s| s.running.take())
            .unwrap_or_else(|| panic!("node {id} is not running"));
        running.kill();
        // Free the port before a restart binds it again.
        wait_for(&format!("node {id}'s port to close"), Duration::from_secs(5), || async {
            TcpListener::bind(self.address(id)).await.ok().map(drop)
        })
        .await;
    }

    /// Restarts a killed node from its data directory, on its old address.
    pub async fn restart(&mut self, id: u64) {
        let slot = self.slots.get_mut(&id).expect("known node");
        assert!(slot.running.is_none(), "node {id} is running");
        let listener = TcpListener::bind(&slot.address).await.expect("rebind the node's port");
        slot.running =
            Some(start(&slot.dir, Some(listener), self.options.clone()).await.expect("restart"));
    }

    /// Drops (or restores) RPCs from `from` to `to`.
    pub fn set_link(&self, from: u64, to: u64, action: LinkAction) {
        self.faults.set(from, to, action);
    }

    /// Cuts every link between the two groups, both directions.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        for x in a {
            for y in b {
                self.faults.set(*x, *y, LinkAction::Drop);
                self.faults.set(*y, *x, LinkAction::Drop);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.faults.rules.lock().expect("faults lock").clear();
    }

    /// An admin client for a node, over mTLS with the operator certificate.
    pub fn admin_client(&self, id: u64) -> AdminClient<Channel> {
        let tls =
            client_config(&self.admin.ca_pem, Some(&self.admin.identity)).expect("client TLS");
        let channel =
            dsops_identity::channel(self.address(id), API_SERVER_NAME, tls).expect("channel");
        AdminClient::new(channel)
            .max_decoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE)
            .max_encoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE)
    }

    /// Shuts every running node down cleanly and keeps their data directories (the returned
    /// directory holds `node-1`, `node-2`, ...).
    pub async fn shutdown_keeping_dirs(mut self) -> tempfile::TempDir {
        for slot in self.slots.values_mut() {
            if let Some(running) = slot.running.take() {
                running.shutdown().await;
            }
        }
        self.root
    }

    /// Shuts every running node down cleanly.
    pub async fn shutdown(mut self) {
        for slot in self.slots.values_mut() {
            if let Some(running) = slot.running.take() {
                running.shutdown().await;
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
