//! The agents: real `dsops-agent` processes (enrolled here, then `dsops-agent run`), so killing
//! one is a SIGKILL: its jobs die wherever they are, its files stay as the kill left them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dsops_tests::agents::{AgentProject, agent_token, enroll};
use dsops_tests::{TestCluster, wait_for};

use crate::AGENTS;

/// The agent processes, by name; every one still running is killed when this is dropped.
pub struct Agents {
    binary: PathBuf,
    config: PathBuf,
    data_dirs: BTreeMap<&'static str, PathBuf>,
    children: BTreeMap<&'static str, Child>,
}

impl Agents {
    /// Enrols every agent of [`AGENTS`] in its segment, starts it and waits for its session.
    pub async fn start(project: &AgentProject, cluster: &TestCluster) -> Agents {
        let binary =
            std::env::current_exe().expect("this binary's path").with_file_name("dsops-agent");
        assert!(
            binary.exists(),
            "{} is not built: run `cargo build -p dsops-agent --bin dsops-agent` (scripts/chaos.sh does)",
            binary.display()
        );
        let mut agents = Agents {
            binary,
            config: project.project.config.clone(),
            data_dirs: BTreeMap::new(),
            children: BTreeMap::new(),
        };
        let servers: Vec<String> =
            cluster.ids().iter().map(|&id| cluster.address(id).to_owned()).collect();
        for (name, segment) in AGENTS {
            let leader = cluster.leader().await;
            let token = agent_token(cluster, segment, 600).await;
            let dir = project.data_dir(name);
            let enrolled =
                enroll(&dir, cluster.address(leader), &token).await.expect("enrol the agent");
            agents.data_dirs.insert(name, dir);
            agents.spawn(name, &servers);
            wait_for(&format!("agent {name}'s session"), Duration::from_secs(30), || async {
                let leader = cluster.leader().await;
                cluster
                    .control(leader)
                    .agents()
                    .connected()
                    .iter()
                    .any(|a| a.agent_id == enrolled.agent_id)
                    .then_some(())
            })
            .await;
        }
        agents
    }

    /// Starts agent `name` (`dsops-agent run`), knowing every node in `servers`.
    pub fn spawn(&mut self, name: &'static str, servers: &[String]) {
        let dir = &self.data_dirs[name];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .expect("the agent's log file");
        let mut command = Command::new(&self.binary);
        command.arg("run").arg("--data-dir").arg(dir).arg("-f").arg(&self.config);
        for server in servers {
            command.args(["--server", server]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dsops-agent");
        self.children.insert(name, child);
    }

    /// SIGKILLs agent `name`; `false` if it was not running.
    pub fn kill(&mut self, name: &'static str) -> bool {
        let Some(mut child) = self.children.remove(name) else { return false };
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        true
    }

    /// Whether agent `name` runs.
    pub fn running(&self, name: &'static str) -> bool {
        self.children.contains_key(name)
    }

    /// Agents whose process ended by itself (a crash, not a kill): name and exit status.
    pub fn exited(&mut self) -> Vec<(&'static str, String)> {
        let mut exited = Vec::new();
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((*name, status.to_string()));
            }
        }
        for (name, _) in &exited {
            self.children.remove(name);
        }
        exited
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for name in AGENTS.map(|(name, _)| name) {
            self.kill(name);
        }
    }
}
