//! The embedded default: with no server configured, commands run a one-node control plane and an
//! in-process agent with their state under `.dsops/`. It is the same code as a cluster — raft on
//! redb, the state machine, the admin service, the dispatcher, the executor and signed receipts —
//! with the network left out.
//!
//! ```text
//!  .dsops/cluster/   the node's data directory (raft log, state, its own CA)
//!  .dsops/agent/     the in-process agent's receipt-signing key (0600)
//!  .dsops/stores/    file stores without a `path` setting (one sealed file per entry)
//!  .dsops/keys/      their keys (0600), outside the store directories
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use dsops_agent::config::AgentConfig;
use dsops_agent::executor::Executor;
use dsops_agent::from_config::agent_config;
use dsops_agent::identity::AgentIdentity;
use dsops_agent::in_process::CrashHook;
use dsops_config::config::{Loaded, catalog_files};
use dsops_control_plane::control::ControlPlane;
use dsops_control_plane::control::agents::Task;
use dsops_control_plane::node::{AdminService, DataDir, NodeOptions, RunningNode};
use dsops_control_plane::pki::{CallerIdentity, ConnInfo, Role};
use dsops_control_plane::rotation::{notifier, promotion};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use dsops_state::Command;

/// The segments the configuration's services, stores and notification channels are in.
fn segments(loaded: &Loaded) -> BTreeSet<String> {
    let mut segments = BTreeSet::from(["default".to_owned()]);
    segments.extend(loaded.config.services.values().filter_map(|s| s.segment.clone()));
    segments.extend(loaded.config.secret_stores.values().filter_map(|s| s.segment.clone()));
    segments.extend(loaded.config.notifications.channels.values().map(|c| c.segment.clone()));
    segments
}

/// Changes the in-process agents' configuration (tests and benchmarks).
pub type TuneAgent = Arc<dyn Fn(&mut AgentConfig) + Send + Sync>;

/// How long opening the embedded default waits, at most, for the runs it finds in flight (an
/// earlier command was interrupted) before it does its own work. A step resent to the fresh agent
/// ends in well under a second; this covers backoffs and a target that answers slowly.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(120);

/// Test knobs of the embedded default.
#[derive(Clone, Default)]
pub struct EmbeddedOptions {
    /// A crash point for the in-process agents (see [`CrashHook`]).
    pub crash: Option<CrashHook>,
    /// Overrides the agents' configuration limits (session wait, target timeout).
    pub tune_agent: Option<TuneAgent>,
    /// How long to wait for runs found in flight at open ([`RECOVERY_LIMIT`] when unset).
    pub recovery_limit: Option<Duration>,
}

impl std::fmt::Debug for EmbeddedOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedOptions")
            .field("crash", &self.crash.is_some())
            .finish_non_exhaustive()
    }
}

/// A running embedded control plane with its in-process agents.
#[derive(Debug)]
pub struct Embedded {
    node: RunningNode,
    admin: AdminService,
    agents: Vec<tokio::task::JoinHandle<()>>,
    options: EmbeddedOptions,
    agent_config: AgentConfig,
    state_dir: PathBuf,
    segments: BTreeSet<String>,
    /// Runs an interrupted command left in flight, as far as opening drove them.
    recovered: Vec<wire::RunSummary>,
}

/// Options of the embedded node (fast elections: it is the only voter).
fn node_options() -> NodeOptions {
    NodeOptions {
        heartbeat: Duration::from_millis(20),
        election_timeout: (Duration::from_millis(40), Duration::from_millis(80)),
        ..NodeOptions::default()
    }
}

impl Embedded {
    /// Starts (creating on first use) the embedded control plane in `state_dir`, stores the
    /// configuration if it changed, and connects one in-process agent per segment.
    pub async fn open(
        state_dir: &Path,
        config_path: &Path,
        loaded: &Loaded,
    ) -> anyhow::Result<Embedded> {
        Embedded::open_with(state_dir, config_path, loaded, EmbeddedOptions::default()).await
    }

    /// [`Embedded::open`] with test knobs.
    pub async fn open_with(
        state_dir: &Path,
        config_path: &Path,
        loaded: &Loaded,
        options: EmbeddedOptions,
    ) -> anyhow::Result<Embedded> {
        let dir = DataDir::new(&state_dir.join("cluster"));
        if !dir.is_initialized() {
            std::fs::create_dir_all(state_dir)
                .with_context(|| format!("creating {}", state_dir.display()))?;
            // The address is recorded in the membership only: the embedded node never listens.
            dsops_control_plane::node::init(&dir, "127.0.0.1:7400", None).await.map_err(|e| {
                anyhow!("creating the embedded control plane in {}: {e}", state_dir.display())
            })?;
        }
        let node = dsops_control_plane::node::start_local(&dir, node_options()).await.map_err(|e| {
            anyhow!("starting the embedded control plane in {}: {e} (is another dsops command using it?)", state_dir.display())
        })?;
        let control = node.control.clone();
        control
            .raft()
            .wait(Some(Duration::from_secs(10)))
            .current_leader(control.node_id(), "the embedded node leads")
            .await
            .map_err(|e| anyhow!("the embedded control plane did not start: {e}"))?;
        let admin = AdminService::new(control.clone());
        let base_dir =
            config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut agent_config = agent_config(loaded, state_dir, base_dir)?;
        if let Some(tune) = &options.tune_agent {
            tune(&mut agent_config);
        }
        let mut embedded = Embedded {
            node,
            admin,
            agents: Vec::new(),
            options,
            agent_config,
            state_dir: state_dir.to_path_buf(),
            segments: segments(loaded),
            recovered: Vec::new(),
        };
        embedded.sync_config(config_path, loaded).await?;
        embedded.connect_agents().await?;
        embedded.recovered = embedded.finish_interrupted().await?;
        // Reminders of secrets past or near their due time: nothing runs between commands here,
        // so each command looks once as it starts (and every 30 s while it runs).
        if let Err(error) = dsops_control_plane::rotation::reminders::tick(embedded.control()).await
        {
            tracing::warn!(%error, "reminders: could not look for secrets past due");
        }
        Ok(embedded)
    }

    /// Drives the runs an earlier, interrupted command left in flight until each has ended or
    /// settled (see [`crate::follow::settled`]), for at most the recovery limit, with a spinner
    /// naming the run and its step. The embedded control plane only lives while a command runs,
    /// so nothing else would move them; until they end, `dsops get` could hand out a value the
    /// target no longer accepts.
    async fn finish_interrupted(&self) -> anyhow::Result<Vec<wire::RunSummary>> {
        let ids: Vec<String> =
            self.control().read_local(|s| s.active_runs.iter().cloned().collect()).await;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.options.recovery_limit.unwrap_or(RECOVERY_LIMIT);
        let started = std::time::Instant::now();
        let bar = crate::follow::spinner();
        let runs = loop {
            let request = wire::GetRunsRequest { run_ids: ids.clone(), with_steps: false };
            let runs = self
                .admin
                .get_runs(self.request(request))
                .await
                .map_err(|s| anyhow!("reading the runs in flight: {}", s.message()))?
                .into_inner()
                .runs;
            let going: Vec<&wire::RunSummary> =
                runs.iter().filter(|r| !crate::follow::settled(r)).collect();
            if going.is_empty() || started.elapsed() >= limit {
                break runs;
            }
            let first = going[0];
            let more = if going.len() > 1 {
                format!(" and {} more", going.len() - 1)
            } else {
                String::new()
            };
            bar.set_message(format!(
                "finishing interrupted run {} ({}): {}{more}",
                first.run_id,
                crate::follow::secret_name(first),
                crate::follow::position(first)
            ));
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        bar.finish_and_clear();
        Ok(runs)
    }

    /// The runs an interrupted command had left in flight when this one opened, as far as
    /// opening drove them (ended, settled, or still going after the recovery limit).
    pub fn recovered(&self) -> &[wire::RunSummary] {
        &self.recovered
    }

    /// The control plane.
    pub fn control(&self) -> &ControlPlane {
        &self.node.control
    }

    /// The admin service, called in-process.
    pub fn admin(&self) -> &AdminService {
        &self.admin
    }

    /// A request as the local operator (whoever can read `.dsops/` is the operator).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let user = std::env::var("USER").unwrap_or_else(|_| "local".to_owned());
        request.extensions_mut().insert(ConnInfo {
            remote: None,
            certs: Vec::new(),
            server_name: None,
            identity: Some(CallerIdentity::local(Role::Operator, format!("local:{user}"))),
        });
        request
    }

    /// Stores the configuration when it differs from the stored one (the same path as
    /// `dsops apply`).
    async fn sync_config(&self, config_path: &Path, loaded: &Loaded) -> anyhow::Result<()> {
        let config_yaml = std::fs::read_to_string(config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let files = match &loaded.config.rotation.data_dir {
            Some(dir) => catalog_files(dir).map_err(|d| {
                anyhow!("{}", d.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
            })?,
            None => Default::default(),
        };
        let stored = self.control().read_local(|s| s.current_config().cloned()).await;
        if stored.as_ref().is_some_and(|c| c.config_yaml == config_yaml && c.catalog_files == files)
        {
            return Ok(());
        }
        let config_name = config_path
            .file_name()
            .map_or_else(|| "dsops.yaml".to_owned(), |n| n.to_string_lossy().into_owned());
        let request = wire::ApplyConfigRequest {
            request_id: random_id(),
            config_yaml,
            config_path: config_name,
            catalog_files: files.into_iter().collect(),
            expected_version: 0,
        };
        self.admin
            .apply_config(self.request(request))
            .await
            .map_err(|s| anyhow!("storing the configuration: {}", s.message()))?;
        Ok(())
    }

    async fn connect_agents(&mut self) -> anyhow::Result<()> {
        for segment in self.segments.clone() {
            let agent_id = format!("local-{segment}");
            let key_path = self.state_dir.join("agent").join(format!("{agent_id}.key"));
            let task = attach_agent(
                self.control(),
                &agent_id,
                &segment,
                &key_path,
                self.agent_config.clone(),
                self.options.crash.clone(),
            )
            .await?;
            self.agents.push(task);
        }
        Ok(())
    }

    /// Replaces the in-process agents with fresh ones (new sessions), as after an agent
    /// process restarted.
    pub async fn restart_agents(&mut self) -> anyhow::Result<()> {
        for agent in self.agents.drain(..) {
            agent.abort();
        }
        self.connect_agents().await
    }

    /// Stops abruptly, as close to a crash as one process gets: no clean raft shutdown.
    pub fn kill(self) {
        for agent in &self.agents {
            agent.abort();
        }
        self.node.kill();
    }

    /// Delivers the notifications of this command's events (for at most [`FLUSH_LIMIT`], with a
    /// spinner), then stops the agents and the node cleanly. What is left undelivered stays in
    /// the outbox for the next command.
    pub async fn close(self) {
        let bar = std::cell::OnceCell::new();
        let left = self
            .node
            .notifier
            .flush(FLUSH_LIMIT, |waiting| {
                bar.get_or_init(crate::follow::spinner)
                    .set_message(format!("delivering {waiting} notification(s)"));
            })
            .await;
        if let Some(bar) = bar.get() {
            bar.finish_and_clear();
        }
        if left > 0 {
            eprintln!(
                "note: {left} notification(s) not delivered yet; they go out the next time a dsops command runs here (dsops notification list)"
            );
        }
        // The embedded node lives for one command: it signs a checkpoint of the audit chain
        // as it closes when the last one is older than the interval (registering the evidence
        // key the first time).
        let every = dsops_control_plane::node::NodeOptions::default().checkpoint_every;
        if let Err(error) =
            dsops_control_plane::node::evidence::checkpoint(&self.node.control, every).await
        {
            tracing::warn!(%error, "audit checkpoint not signed");
        }
        for agent in &self.agents {
            agent.abort();
        }
        self.node.shutdown().await;
    }
}

/// Registers an in-process agent with `control` (its receipt key from `key_path`, created if
/// missing) and connects it to that node's dispatcher. Returns the agent's task.
pub async fn attach_agent(
    control: &ControlPlane,
    agent_id: &str,
    segment: &str,
    key_path: &Path,
    config: AgentConfig,
    crash: Option<CrashHook>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let identity =
        AgentIdentity::load_or_create(agent_id, segment, key_path).map_err(|e| anyhow!(e))?;
    let command = Command::RegisterAgent {
        agent_id: agent_id.to_owned(),
        segment: segment.to_owned(),
        public_key: identity.public_key_hex(),
    };
    let request_id = format!("register-{agent_id}-{}", &identity.public_key_hex()[..16]);
    control
        .write("embedded", &request_id, command)
        .await
        .map_err(|e| anyhow!("registering agent {agent_id}: {e}"))?;
    let executor = Arc::new(Executor::new(identity, config));
    let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
    let session = control.agents().connect(agent_id, segment, jobs);
    let (deliveries, mut inbox) = tokio::sync::mpsc::unbounded_channel();
    control.agents().take_deliveries(agent_id, session, segment, deliveries);
    // Notification deliveries and health-check probes, as a remote agent's session does them:
    // credentials from this agent's stores, the result signed with its key and recorded through
    // raft.
    let deliver = {
        let (control, executor, agent_id) =
            (control.clone(), executor.clone(), agent_id.to_owned());
        async move {
            while let Some(task) = inbox.recv().await {
                let (control, executor, agent_id) =
                    (control.clone(), executor.clone(), agent_id.clone());
                tokio::spawn(async move {
                    let record = control.read_local(|s| s.agents.get(&agent_id).cloned()).await;
                    let Some(record) = record else { return };
                    match task {
                        Task::Delivery(delivery) => {
                            let result = dsops_agent::notify::perform(&executor, &delivery).await;
                            notifier::record_result(&control, &record, &result).await;
                        }
                        Task::Preflight(request) => {
                            let result = dsops_agent::preflight::perform(&executor, &request).await;
                            control.agents().preflight_answered(result);
                        }
                        Task::HealthCheck(check) => {
                            let result = dsops_agent::health::perform(&executor, &check).await;
                            promotion::record_health(&control, &record, &result).await;
                        }
                        _ => {}
                    }
                });
            }
        }
    };
    let submitter = control.clone();
    let sender = agent_id.to_owned();
    let submit = move |receipt| {
        let control = submitter.clone();
        let sender = sender.clone();
        async move {
            if let Err(reason) =
                dsops_control_plane::rotation::submit_receipt(&control, &receipt, &sender).await
            {
                tracing::warn!(%reason, "receipt not accepted");
            }
        }
    };
    let serve = AbortOnDrop(dsops_agent::in_process::serve(executor, queue, submit, crash));
    Ok(tokio::spawn(async move {
        let _serve = serve;
        deliver.await;
    }))
}

/// How long closing the embedded default waits, at most, for notifications to go out (one
/// delivery's timeout and a little).
pub const FLUSH_LIMIT: Duration = Duration::from_secs(20);

/// Aborts a task when dropped (the in-process agent's job loop, with its delivery loop).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fresh request id.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    dsops_proto::hex(&bytes)
}

/// The default state directory.
pub fn default_state_dir() -> PathBuf {
    PathBuf::from(".dsops")
}
