//! A rotation test bed: a dsops.yaml pointing at the test databases, the embedded control plane
//! with its in-process agent, and helpers to rotate and to read the store.

use crate::runs::RunView;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::from_config::open_store;
use dsops_agent::store::{Label, SecretStore};
use dsops_cli::embedded::{Embedded, random_id};
use dsops_config::config::{Loaded, load_file};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;

use crate::databases::{Flavor, ServerUrl};
use crate::wait_for;

/// A temporary project: its directory, config file and state directory.
#[derive(Debug)]
pub struct Project {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// `dsops.yaml`.
    pub config: PathBuf,
    /// `.dsops`.
    pub state: PathBuf,
}

impl Project {
    /// Writes `yaml` as the project's dsops.yaml.
    pub fn new(yaml: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("dsops.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let state = dir.path().join(".dsops");
        Project { dir, config, state }
    }

    /// The validated configuration.
    pub fn loaded(&self) -> Loaded {
        load_file(&self.config).unwrap_or_else(|d| panic!("invalid test config: {d:?}"))
    }

    /// Opens the store `local`.
    pub fn store(&self) -> Box<dyn SecretStore> {
        open_store(&self.loaded(), "local", &self.state, self.dir.path()).expect("open store")
    }

    /// Puts a value (as `dsops store put` does).
    pub fn put(&self, entry: &str, field: &str, value: &str) {
        self.store().put(entry, field, &SecretValue::new(value.to_owned())).expect("store put");
    }

    /// A field of an entry under `label`.
    pub fn read(&self, entry: &str, field: &str, label: Label) -> Option<String> {
        self.store()
            .read(entry, label)
            .expect("store read")
            .and_then(|fields| fields.get(field).map(|v| v.expose().to_owned()))
    }

    /// Starts the embedded control plane.
    pub async fn open(&self) -> Embedded {
        Embedded::open(&self.state, &self.config, &self.loaded())
            .await
            .expect("embedded control plane")
    }
}

/// The `services:` block for a test database called `db`, and the admin entry to store.
pub fn database_service(flavor: Flavor) -> (String, ServerUrl) {
    database_service_at(flavor, "db", None, "local")
}

/// The `services:` block for a test database called `name`, in `segment` (if any), with its
/// admin credential at `store://<store>/db/admin`; and the admin entry to store.
pub fn database_service_at(
    flavor: Flavor,
    name: &str,
    segment: Option<&str>,
    store: &str,
) -> (String, ServerUrl) {
    let mut url = ServerUrl::parse(&flavor.service().url());
    let (kind, database) = match flavor {
        Flavor::Postgres => ("postgresql", "\n    database: postgres"),
        Flavor::MariaDb => ("mysql", ""),
        Flavor::Redis => ("redis", ""),
    };
    if url.user.is_empty() {
        // `requirepass` is the password of Redis's `default` user.
        url.user = "default".to_owned();
    }
    let segment = segment.map(|s| format!("\n    segment: {s}")).unwrap_or_default();
    let yaml = format!(
        "  {name}:\n    type: {kind}{segment}\n    host: {}\n    port: {}{database}\n    admin_store: store://{store}/db/admin\n",
        url.host, url.port
    );
    (yaml, url)
}

/// A project whose `dev/DB` rotates the password of `user` on the test database `db` with the
/// `immediate` strategy (`extra` is appended to `dev`'s variables), the admin credential stored.
pub fn immediate_project(flavor: Flavor, user: &str, extra: &str) -> Project {
    let (service, admin) = database_service(flavor);
    let project = Project::new(&format!(
        "version: 1\nsecretStores:\n  local: {{ type: file }}\nservices:\n{service}envs:\n  dev:\n    DB:\n      from: {{ store: \"store://local/app/db#password\", service: \"svc://db?kind={kind}\" }}\n      rotation: {{ strategy: immediate, config: {{ username: {user} }} }}\n{extra}",
        kind = flavor.kind()
    ));
    project.put("db/admin", "user", &admin.user);
    project.put("db/admin", "password", &admin.password);
    project
}

/// A forced rotation of one secret, with a new request id.
pub fn rotate_request(env: &str, key: &str) -> wire::RotateRequest {
    wire::RotateRequest {
        request_id: random_id(),
        selector: Some(wire::rotate_request::Selector::Secret(wire::SecretKey {
            env: env.into(),
            key: key.into(),
        })),
        force: true,
        dry_run: false,
        reason: "test".into(),
        only: Vec::new(),
        break_glass: false,
    }
}

/// Rotates one secret through the admin API and waits until the run ends (or is only waiting
/// for its retire step's grace period).
pub async fn rotate(embedded: &Embedded, env: &str, key: &str) -> wire::RunSummary {
    let request = rotate_request(env, key);
    let response =
        embedded.admin().rotate(embedded.request(request)).await.expect("rotate").into_inner();
    let run_id = response.runs.first().expect("a run started").run_id.clone();
    wait_run(embedded, &run_id).await
}

/// Waits for a run to end.
pub async fn wait_run(embedded: &Embedded, run_id: &str) -> wire::RunSummary {
    wait_for("the run to end", Duration::from_secs(120), || async {
        let request = wire::GetRunsRequest { run_ids: vec![run_id.to_owned()], with_steps: true };
        let runs =
            embedded.admin().get_runs(embedded.request(request)).await.ok()?.into_inner().runs;
        runs.into_iter().next().filter(|r| r.is_finished())
    })
    .await
}

/// Whether a directory tree contains `needle` in any file (for canary scans).
pub fn tree_contains(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}
