//! Remote agents against a [`TestCluster`]: enrolment tokens, enrolment over real mTLS, agents
//! running their real session (`dsops_agent::host`), and rotations through the admin API.

use crate::runs::RunView;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::config::AgentPolicy;
use dsops_agent::from_config::open_store;
use dsops_agent::host::{self, AgentRun, EnrolledState, RunningAgent};
use dsops_agent::session::SessionState;
use dsops_agent::store::{Label, SecretStore};
use dsops_cli::embedded::random_id;
use dsops_config::config::Loaded;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_client::AdminClient;
use tonic::transport::Channel;

use crate::rotation::{Project, rotate_request};
use crate::{TestCluster, wait_for};

/// A dsops.yaml in a temporary directory (a [`Project`]), with a data directory per agent under
/// it.
#[derive(Debug)]
pub struct AgentProject {
    /// The directory and its configuration.
    pub project: Project,
}

impl AgentProject {
    /// Writes `yaml` as dsops.yaml.
    pub fn new(yaml: &str) -> AgentProject {
        AgentProject { project: Project::new(yaml) }
    }

    /// The validated configuration.
    pub fn loaded(&self) -> Loaded {
        self.project.loaded()
    }

    /// The data directory of agent `name`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.project.dir.path().join(format!("agent-{name}"))
    }

    /// The store `store` as agent `name` holds it.
    pub fn store(&self, name: &str, store: &str) -> Box<dyn SecretStore> {
        open_store(&self.loaded(), store, &self.data_dir(name), self.project.dir.path())
            .expect("store")
    }

    /// Puts a value into agent `name`'s store.
    pub fn put(&self, name: &str, store: &str, entry: &str, field: &str, value: &str) {
        self.store(name, store)
            .put(entry, field, &SecretValue::new(value.to_owned()))
            .expect("store put");
    }

    /// A field of an entry in agent `name`'s store.
    pub fn read(&self, name: &str, store: &str, entry: &str, field: &str) -> Option<String> {
        self.store(name, store)
            .read(entry, Label::Current)
            .expect("store read")
            .and_then(|f| f.get(field).map(|v| v.expose().to_owned()))
    }

    /// Stores the configuration in the cluster.
    pub async fn apply(&self, cluster: &TestCluster) {
        let leader = cluster.leader().await;
        cluster
            .admin_client(leader)
            .apply_config(wire::ApplyConfigRequest {
                request_id: random_id(),
                config_yaml: std::fs::read_to_string(&self.project.config).expect("read config"),
                config_path: "dsops.yaml".into(),
                catalog_files: Default::default(),
                expected_version: 0,
            })
            .await
            .expect("apply config");
    }

    /// Starts agent `name` (enrolled in its data directory), reaching `servers`.
    pub fn start(&self, name: &str, servers: &[&str]) -> RunningAgent {
        self.start_with(name, servers, AgentPolicy::default())
    }

    /// Enrolls and starts one agent per `(name, segment)`, each knowing every node of
    /// `cluster` (so it follows the leader), and waits until each is connected.
    pub async fn start_agents(
        &self,
        cluster: &TestCluster,
        agents: &[(&str, &str)],
    ) -> Vec<RunningAgent> {
        let leader = cluster.leader().await;
        let addresses: Vec<&str> = cluster.ids().iter().map(|&id| cluster.address(id)).collect();
        let mut running = Vec::new();
        for (name, segment) in agents {
            let token = agent_token(cluster, segment, 600).await;
            enroll(&self.data_dir(name), cluster.address(leader), &token).await.expect("enroll");
            let agent = self.start(name, &addresses);
            wait_connected(&agent).await;
            running.push(agent);
        }
        running
    }

    /// Starts agent `name` with a local policy.
    pub fn start_with(&self, name: &str, servers: &[&str], policy: AgentPolicy) -> RunningAgent {
        let run = AgentRun {
            data_dir: self.data_dir(name),
            servers: servers.iter().map(|s| s.to_string()).collect(),
            backoff: (Duration::from_millis(50), Duration::from_millis(500)),
            policy,
        };
        host::start(&run, &self.loaded(), self.project.dir.path(), None).expect("start agent")
    }
}

/// An enrolment token for `segment`, valid for `ttl_seconds`.
pub async fn agent_token(cluster: &TestCluster, segment: &str, ttl_seconds: u64) -> String {
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .create_agent_token(wire::CreateAgentTokenRequest {
            request_id: random_id(),
            segment: segment.into(),
            ttl_seconds,
        })
        .await
        .expect("create agent token")
        .into_inner()
        .token
}

/// Enrols an agent into `dir` through node `address`.
pub async fn enroll(dir: &Path, address: &str, token: &str) -> anyhow::Result<EnrolledState> {
    host::enroll(dir, address, token, "test-host").await
}

/// Enrols agent `name` of `project` into `segment` through the leader, starts it and waits for
/// its session.
pub async fn enrolled_agent(
    project: &AgentProject,
    cluster: &TestCluster,
    name: &str,
    segment: &str,
) -> RunningAgent {
    let address = cluster.address(cluster.leader().await).to_owned();
    let token = agent_token(cluster, segment, 600).await;
    enroll(&project.data_dir(name), &address, &token).await.expect("enrol the agent");
    let agent = project.start(name, &[&address]);
    wait_connected(&agent).await;
    agent
}

/// Waits until `agent` has a session with the leader.
pub async fn wait_connected(agent: &RunningAgent) -> String {
    let mut state = agent.state.clone();
    wait_for("the agent's session", Duration::from_secs(20), || {
        let current = state.borrow_and_update().clone();
        async move {
            match current {
                SessionState::Connected { address, .. } => Some(address),
                SessionState::Disconnected { .. } => None,
            }
        }
    })
    .await
}

/// Starts a rotation of `env/key` at the leader (retrying, with the same request id, while the
/// cluster is between leaders or too busy to confirm one) and returns the run id.
pub async fn start_rotation(cluster: &TestCluster, env: &str, key: &str) -> String {
    let request = rotate_request(env, key);
    wait_for("the rotation to start", Duration::from_secs(30), || {
        let request = request.clone();
        async move {
            let leader = cluster.leader().await;
            match cluster.admin_client(leader).rotate(request).await {
                Ok(response) => Some(response.into_inner().runs.first()?.run_id.clone()),
                Err(status) if status.code() == tonic::Code::Unavailable => None,
                Err(status) => panic!("rotate {env}/{key}: {status}"),
            }
        }
    })
    .await
}

/// Starts a rotation of `env/key` and waits for the run to end.
pub async fn rotate(cluster: &TestCluster, env: &str, key: &str) -> wire::RunSummary {
    let run_id = start_rotation(cluster, env, key).await;
    wait_run(cluster, &run_id, Duration::from_secs(120)).await
}

/// Waits for a run to end, asking whichever node leads; panics with the run's last state.
pub async fn wait_run(cluster: &TestCluster, run_id: &str, deadline: Duration) -> wire::RunSummary {
    let started = std::time::Instant::now();
    let mut last = None;
    loop {
        let leader = cluster.leader().await;
        let mut admin: AdminClient<Channel> = cluster.admin_client(leader);
        let request = wire::GetRunsRequest { run_ids: vec![run_id.to_owned()], with_steps: true };
        if let Ok(response) = admin.get_runs(request).await
            && let Some(run) = response.into_inner().runs.into_iter().next()
        {
            if run.is_finished() {
                return run;
            }
            last = Some(run);
        }
        assert!(
            started.elapsed() < deadline,
            "run {run_id} did not end within {deadline:?}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until node `control`'s audit log has an `action` event whose subject or detail contains
/// `needle`; returns its detail.
pub async fn wait_audit(
    control: &dsops_control_plane::control::ControlPlane,
    action: &str,
    needle: &str,
    deadline: Duration,
) -> String {
    wait_for(&format!("{action} ({needle}) in the audit log"), deadline, || async {
        control
            .read_local(|state| {
                state
                    .audit
                    .events()
                    .iter()
                    .find(|e| {
                        e.action == action
                            && (e.subject.contains(needle) || e.detail.contains(needle))
                    })
                    .map(|e| e.detail.clone())
            })
            .await
    })
    .await
}

/// The agents the cluster lists.
pub async fn list_agents(cluster: &TestCluster) -> Vec<wire::AgentInfo> {
    let leader = cluster.leader().await;
    cluster
        .admin_client(leader)
        .list_agents(wire::ListAgentsRequest {})
        .await
        .expect("list agents")
        .into_inner()
        .agents
}

/// A token service like an API that holds two keys during a grace period. With `slow` present,
/// an apply announces itself in `started` and takes 4 s. Every call is logged in `calls`.
pub const TOKEN_PROGRAM: &str = r#"
import fcntl, json, os, sys, time
target, dir = sys.argv[1], sys.argv[2]
request = json.load(sys.stdin)
step, value, other = request["step"], request["value"], request.get("current")
with open(os.path.join(dir, "calls"), "a") as log:
    log.write(f"{request['run_id']} {step} {request.get('checked_step')} {request['attempt']}\n")
if step == "apply" and os.path.exists(os.path.join(dir, "slow")):
    os.remove(os.path.join(dir, "slow"))
    open(os.path.join(dir, "started"), "w").close()
    time.sleep(4)
# Runs of several secrets call it at once: one at a time reads and rewrites the token file.
lock = open(target + ".lock", "w")
fcntl.flock(lock, fcntl.LOCK_EX)
def tokens():
    try:
        return set(open(target).read().split())
    except FileNotFoundError:
        return set()
valid = tokens()
outcome = "succeeded"
if step == "apply":
    valid.add(value)
elif step == "verify":
    outcome = "succeeded" if value in valid else "not_applied"
elif step == "retire":
    valid.discard(other or "")
elif step == "rollback":
    valid.add(value); valid.discard(other or "")
elif step == "check":
    present = value in valid
    if request["checked_step"] == "retire":
        present = (other or "") not in valid
    outcome = "succeeded" if present else "not_applied"
open(target, "w").write("\n".join(sorted(valid)))
print(json.dumps({"outcome": outcome, "detail": step}))
"#;

pub const TOKEN_FIRST: &str = "first-token-000000000000000000000";

/// A project whose secrets `prod/API_TOKEN_<n>` rotate through [`TOKEN_PROGRAM`] (a script
/// service), with a store every agent of the project shares (as agents of one segment share a
/// vault). Returns it and the program's directory (`calls`, `slow`, `started`, `valid-tokens`).
pub fn token_project(secrets: usize) -> (AgentProject, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("tokens.py"), TOKEN_PROGRAM).expect("write the program");
    let mut envs = String::new();
    for n in 0..secrets {
        envs.push_str(&format!(
            "    API_TOKEN_{n}:\n      from: {{ store: \"store://shared/app/token{n}#value\", service: \"svc://tokens?kind=secret\" }}\n      rotation: {{ strategy: script }}\n"
        ));
    }
    let yaml = format!(
        "version: 1\nsecretStores:\n  shared: {{ type: file, path: {root}/store, key_file: {root}/store.key }}\nservices:\n  tokens:\n    type: script\n    command: [python3, {root}/tokens.py, {root}/valid-tokens, {root}]\n    timeout: 20s\nrotation:\n  defaults:\n    grace_period: 1s\nenvs:\n  prod:\n{envs}",
        root = root.display()
    );
    let project = AgentProject::new(&yaml);
    let root = dir.keep(); // Lives as long as the test process.
    for n in 0..secrets {
        project.put("a", "shared", &format!("app/token{n}"), "value", TOKEN_FIRST);
    }
    (project, root)
}
