//! Starting a node: storage, raft, the TLS listener and the three gRPC services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dsops_proto::wire::admin::admin_server::AdminServer;
use dsops_proto::wire::agent::agent_service_server::AgentServiceServer;
use dsops_proto::wire::raft::node_join_server::NodeJoinServer;
use dsops_proto::wire::raft::raft_peer_server::RaftPeerServer;
use openraft::{Config, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::admin_service::AdminService;
use super::agent_service::AgentService;
use super::join_service::JoinService;
use super::layout::DataDir;
use crate::control::ControlPlane;
use crate::pki::{ClusterPki, ServerTls};
use crate::raft::{
    LinkFilter, LogStore, Network, OpenLinks, RaftPeerService, StateMachineStore, TypeConfig,
};
use crate::rotation::notifier::Notifier;
use dsops_identity::client_config;

/// Knobs for starting a node (tests shorten timeouts and inject link faults).
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Election timeout range (a follower that hears nothing for this long campaigns).
    pub election_timeout: (Duration, Duration),
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for followers slightly behind).
    pub keep_logs: u64,
    /// Decides the fate of each outgoing raft RPC.
    pub links: Arc<dyn LinkFilter>,
    /// How long agent certificates are valid (renewed over the session).
    pub agent_cert_validity: Duration,
    /// Start runs when schedules fire (while leading). Off in tests that drive every rotation
    /// themselves; the embedded default never schedules (it lives for one command).
    pub scheduler: bool,
    /// How often counted refusals (handshakes, sessions, receipts) are summarised in the audit
    /// log.
    pub refusal_summary: Duration,
    /// How long and how many audit events this node keeps.
    pub audit_retention: crate::raft::AuditRetention,
    /// How often the leader signs a checkpoint of the audit chain (also when nothing happened).
    pub checkpoint_every: Duration,
    /// Serve the reports API on this address (`host:port`; port 0 picks one).
    pub reports_listen: Option<String>,
}

/// How often a leader checkpoints the audit chain unless told otherwise.
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(300);

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            // A follower campaigns after the leader lease (the maximum) plus a random timeout
            // in the range: 600-800 ms of silence here. Raise both for links slower than a LAN.
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
            snapshot_every: 10_000,
            keep_logs: 1_000,
            links: Arc::new(OpenLinks),
            agent_cert_validity: super::AGENT_CERT_VALIDITY,
            scheduler: true,
            refusal_summary: Duration::from_secs(60),
            audit_retention: crate::raft::AuditRetention::default(),
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            reports_listen: None,
        }
    }
}

impl NodeOptions {
    fn raft_config(&self) -> Result<Config, String> {
        let config = Config {
            cluster_name: "dsops".to_owned(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election_timeout.0.as_millis() as u64,
            election_timeout_max: self.election_timeout.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // At most 32 entries per AppendEntries, and at most about 1 MiB of them
            // (`limited_get_log_entries`), unless one entry alone is larger (1 MiB at most).
            max_payload_entries: 32,
            ..Config::default()
        };
        config.validate().map_err(|e| format!("raft configuration: {e}"))
    }
}

/// A running node.
#[derive(Debug)]
pub struct RunningNode {
    /// The control plane of this node.
    pub control: ControlPlane,
    /// The address it listens on.
    pub address: SocketAddr,
    /// Its notifier (the embedded default flushes it before a command exits).
    pub notifier: Notifier,
    /// Where the reports API listens, when it was asked for.
    pub reports_address: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    failed: watch::Receiver<Option<String>>,
    /// The listener's TLS (none for the embedded default).
    tls: Option<Arc<ServerTls>>,
}

impl RunningNode {
    /// How many TLS handshakes completed on this node's listener (peers, agents, operators).
    pub fn tls_handshakes(&self) -> u64 {
        self.tls.as_ref().map_or(0, |tls| tls.handshakes())
    }

    /// Stops serving and shuts raft down (a clean stop; for a crash, drop the runtime instead).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.control.raft().shutdown().await;
        let _ = self.server.await;
    }

    /// Resolves when raft stopped on a fatal error (storage failure, panic), with the reason; the
    /// node has stopped serving by then. Pending for ever on a healthy node.
    pub async fn failed(&self) -> String {
        let mut failed = self.failed.clone();
        loop {
            if let Some(why) = failed.borrow_and_update().clone() {
                return why;
            }
            if failed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops abruptly: no graceful shutdown of raft or connections (as close to a crash as one
    /// process can get for an in-process node).
    pub fn kill(self) {
        let _ = self.shutdown.send(true);
        self.server.abort();
        let raft = self.control.raft().clone();
        tokio::spawn(async move {
            let _ = raft.shutdown().await;
        });
    }
}

/// Watches raft for a fatal error: logs it, stops serving (every task of the node ends) and
/// publishes the reason for [`RunningNode::failed`].
fn watch_fatal(
    control: &ControlPlane,
    shutdown: &watch::Sender<bool>,
) -> watch::Receiver<Option<String>> {
    let (report, failed) = watch::channel(None);
    let metrics = control.raft().metrics();
    let shutdown = shutdown.clone();
    let node_id = control.node_id();
    tokio::spawn(async move {
        if let Some(why) = super::fatal::fatal_error(metrics).await {
            tracing::error!(node_id, %why, "raft stopped on a fatal error; the node stops serving");
            let _ = shutdown.send(true);
            let _ = report.send(Some(why));
        }
    });
    failed
}

/// Builds raft for the node in `dir` (storage opened, not serving yet).
pub(crate) async fn open_raft(
    dir: &DataDir,
    node_id: u64,
    options: &NodeOptions,
) -> Result<(Raft<TypeConfig>, StateMachineStore, ClusterPki), String> {
    let pki = ClusterPki::load(&dir.tls()).map_err(|e| e.to_string())?;
    let node_cert = dir.read_node_cert()?;
    let log = LogStore::open(&dir.log_dir(), Some(&dir.legacy_log_db()))
        .map_err(|e| format!("{}: {e}", dir.log_dir().display()))?;
    let state = StateMachineStore::open(&dir.state_db(), options.audit_retention)
        .map_err(|e| format!("{}: {e}", dir.state_db().display()))?;
    let tls = client_config(&pki.peer.cert_pem, Some(&node_cert)).map_err(|e| e.to_string())?;
    let network = Network::new(node_id, tls, options.links.clone());
    let config = Arc::new(options.raft_config()?);
    let raft = Raft::new(node_id, config, network, log, state.clone())
        .await
        .map_err(|e| format!("starting raft: {e}"))?;
    Ok((raft, state, pki))
}

/// Starts the node in `dir`, serving on `listener` (or binding its configured address).
pub async fn start(
    dir: &DataDir,
    listener: Option<TcpListener>,
    options: NodeOptions,
) -> Result<RunningNode, String> {
    let node = dir.read_node()?;
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(&node.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", node.listen))?,
    };
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let reports = match &options.reports_listen {
        Some(listen) => Some(
            TcpListener::bind(listen)
                .await
                .map_err(|e| format!("--reports-listen {listen}: cannot listen: {e}"))?,
        ),
        None => None,
    };
    let reports_address = reports.as_ref().and_then(|l| l.local_addr().ok());
    let (raft, state, pki) = open_raft(dir, node.node_id, &options).await?;
    let tls = ServerTls::new(&dir.read_node_cert()?, &pki).map_err(|e| e.to_string())?;
    let control = ControlPlane::new(node.node_id, raft.clone(), state, pki);
    let tls = Arc::new(tls.on_refusal(super::refusals::audit_hook(control.clone())));
    let (shutdown, mut stopped) = watch::channel(false);
    let incoming = tls.clone().incoming(listener);
    if let Some(reports) = reports {
        tokio::spawn(crate::reports_api::serve(
            control.clone(),
            Arc::new(tls.for_http1()),
            reports,
            shutdown.subscribe(),
        ));
    }
    let agent_service =
        AgentService::new(control.clone(), options.agent_cert_validity, shutdown.subscribe());
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .trace_fn(dsops_telemetry::server_span)
        .add_service(
            RaftPeerServer::new(RaftPeerService::new(raft, shutdown.subscribe()))
                .max_decoding_message_size(160 << 20),
        )
        .add_service(super::admin_gate::OperatorsOnly::new(
            AdminServer::new(AdminService::new(control.clone()))
                .max_decoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE),
            control.clone(),
        ))
        .add_service(NodeJoinServer::new(JoinService::new(control.clone())))
        .add_service(
            AgentServiceServer::new(agent_service)
                .max_decoding_message_size(super::agent_service::MAX_AGENT_MESSAGE),
        );
    let server = tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(%error, "server stopped");
        }
    });
    tokio::spawn(super::promote::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(super::keys::run(control.clone(), dir.clone(), shutdown.subscribe()));
    tokio::spawn(super::refusals::run(
        control.clone(),
        options.refusal_summary,
        shutdown.subscribe(),
    ));
    tokio::spawn(crate::rotation::dispatcher::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(crate::rotation::approvals::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(crate::rotation::promotion::run(control.clone(), shutdown.subscribe()));
    let notifier = Notifier::new(control.clone());
    tokio::spawn(notifier.clone().run(shutdown.subscribe()));
    tokio::spawn(crate::rotation::reminders::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(super::evidence::run(
        control.clone(),
        options.checkpoint_every,
        shutdown.subscribe(),
    ));
    if options.scheduler {
        tokio::spawn(crate::rotation::scheduler::run(control.clone(), shutdown.subscribe()));
    }
    let failed = watch_fatal(&control, &shutdown);
    tracing::info!(node_id = node.node_id, %address, "node serving");
    let tls = Some(tls);
    Ok(RunningNode { control, address, notifier, reports_address, shutdown, server, failed, tls })
}

/// Starts the node in `dir` without a listener: the embedded default, a one-node cluster the
/// CLI drives in-process. Raft, the state machine, the dispatcher, the reminders and the
/// notifier are the same as a served node's; only the network is absent.
pub async fn start_local(dir: &DataDir, options: NodeOptions) -> Result<RunningNode, String> {
    let node = dir.read_node()?;
    let (raft, state, pki) = open_raft(dir, node.node_id, &options).await?;
    let control = ControlPlane::new(node.node_id, raft, state, pki);
    let (shutdown, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    tokio::spawn(crate::rotation::dispatcher::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(crate::rotation::promotion::run(control.clone(), shutdown.subscribe()));
    let notifier = Notifier::new(control.clone());
    tokio::spawn(notifier.clone().run(shutdown.subscribe()));
    tokio::spawn(crate::rotation::reminders::run(control.clone(), shutdown.subscribe()));
    tokio::spawn(super::evidence::run(
        control.clone(),
        options.checkpoint_every,
        shutdown.subscribe(),
    ));
    // A CLI command may end before the first checkpoint tick: count its runs from the start.
    super::evidence::start_run_counters(&control).await?;
    let address = SocketAddr::from(([127, 0, 0, 1], 0));
    let failed = watch_fatal(&control, &shutdown);
    let reports_address = None;
    let tls = None;
    Ok(RunningNode { control, address, notifier, reports_address, shutdown, server, failed, tls })
}
