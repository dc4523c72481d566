//! One rotation is one trace across three processes: `dsops rotate` → the node's admin RPC and
//! raft write → the dispatch of each step → the agent's step and its adapter calls on the real
//! PostgreSQL. The binaries run as they would in production (`dsops-server`, `dsops-agent`,
//! `dsops`, each its own process with `OTEL_EXPORTER_OTLP_ENDPOINT` set) and export over OTLP/gRPC
//! to a receiver this test runs with the OpenTelemetry project's own protocol definitions
//! (`opentelemetry-proto`). The spans carry no value: neither the old nor the new password nor the
//! admin password is anywhere in what was exported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code)] // This test runs its own processes.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{stderr, stdout};
use dsops_tests::agents::AgentProject;
use dsops_tests::databases::Flavor;
use dsops_tests::rotation::database_service_at;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

/// What the receiver got: every export request, decoded and as the bytes it came as.
#[derive(Default)]
struct Received {
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
}

struct Receiver(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
}

fn spans(received: &Received) -> Vec<Span> {
    let mut found = Vec::new();
    for request in received.requests.lock().unwrap().iter() {
        for resource in &request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in &resource.scope_spans {
                for span in &scope.spans {
                    found.push(Span {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent: span.parent_span_id.clone(),
                    });
                }
            }
        }
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sibling binary of `dsops` in the target directory (`cargo test --workspace` builds them).
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_dsops")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bin {name}` (or `cargo test --workspace`)",
        path.display()
    );
    path
}

/// The processes this test started; killed when it ends, however it ends.
#[derive(Default)]
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct World {
    dir: PathBuf,
    server: String,
    endpoint: String,
}

impl World {
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(&self.dir)
            .env_remove("DSOPS_CONFIG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
        command
    }

    fn dsops(&self, args: &[&str]) -> Output {
        let credentials = self.dir.join("n1/admin");
        let output = self
            .command(Path::new(env!("CARGO_BIN_EXE_dsops")))
            .args(args)
            .args(["--server", &self.server, "--credentials", credentials.to_str().unwrap()])
            .output()
            .expect("run dsops");
        assert!(
            output.status.success(),
            "dsops {args:?}: {}\n{}",
            stderr(&output),
            stdout(&output)
        );
        output
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_one_trace_across_the_cli_the_node_and_the_agent() {
    let (server, agent_binary) = (binary("dsops-server"), binary("dsops-agent"));

    // The OTLP receiver.
    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(Receiver(received.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    // The database user whose password rotates, and the project.
    let first = "Trace-first-1f9c2e";
    let app = Flavor::Postgres.create_user("trapp", first, true).await;
    let (pg, pg_admin) = database_service_at(Flavor::Postgres, "pg", None, "local");
    let project = AgentProject::new(&format!(
        "version: 1
secretStores:
  local: {{ type: file }}
services:
{pg}envs:
  prod:
    PG_PASSWORD:
      from: {{ store: \"store://local/app/pg#password\", service: \"svc://pg?kind=db_password\" }}
      rotation: {{ strategy: immediate, config: {{ username: {app} }} }}
",
        app = app.name
    ));
    project.put("a", "local", "db/admin", "user", &pg_admin.user);
    project.put("a", "local", "db/admin", "password", &pg_admin.password);
    project.put("a", "local", "app/pg", "password", first);

    let dir = project.project.dir.path().to_path_buf();
    let address = format!("127.0.0.1:{}", free_port());
    let world = World { dir: dir.clone(), server: address.clone(), endpoint };
    let mut processes = Processes::default();

    // A one-node control plane and one agent, each its own process.
    let init = world
        .command(&server)
        .args(["init", "--data-dir", "n1", "--listen", &address])
        .output()
        .unwrap();
    assert!(init.status.success(), "dsops-server init: {}", stderr(&init));
    let log = std::fs::File::create(dir.join("n1.log")).unwrap();
    processes.0.push(
        world
            .command(&server)
            .args(["run", "--data-dir", "n1"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    world.wait_until("the node to lead", || {
        let credentials = dir.join("n1/admin");
        Command::new(env!("CARGO_BIN_EXE_dsops"))
            .args(["cluster", "status", "--server", &address])
            .args(["--credentials", credentials.to_str().unwrap()])
            .current_dir(&dir)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    world.dsops(&["apply", "-f", "dsops.yaml"]);
    let token = stdout(&world.dsops(&["agent", "token", "create", "--segment", "default"]));
    let agent_dir = project.data_dir("a");
    let enroll = world
        .command(&agent_binary)
        .args(["enroll", "--server", &address, "--data-dir", agent_dir.to_str().unwrap()])
        .args(["--hostname", "bastion-trace"])
        .env("DSOPS_AGENT_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(enroll.status.success(), "dsops-agent enroll: {}", stderr(&enroll));
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    processes.0.push(
        world
            .command(&agent_binary)
            .args(["run", "--data-dir", agent_dir.to_str().unwrap(), "-f", "dsops.yaml"])
            .args(["--server", &address])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    world.wait_until("the agent's session", || {
        let list = world.dsops(&["agent", "list", "--output", "json"]);
        let agents: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        agents.as_array().is_some_and(|a| a.iter().any(|a| a["connected"] == true))
    });

    // The rotation, traced from the command line.
    world.dsops(&[
        "rotate",
        "--env",
        "prod",
        "--key",
        "PG_PASSWORD",
        "--force",
        "--reason",
        "trace",
    ]);
    let new = project.read("a", "local", "app/pg", "password").unwrap();
    assert_ne!(new, first, "the password rotated");
    assert_eq!(
        Flavor::Postgres.login_with_client(&app.name, &new),
        Ok(true),
        "the new one logs in"
    );
    assert_eq!(Flavor::Postgres.login_with_client(&app.name, first), Ok(false), "the old one not");

    // Find the CLI's root span, then wait for its trace to hold every process's part.
    let wanted = ["dsops", "admin.rpc", "raft.write", "dispatch", "agent.step", "adapter"];
    let mut trace = Vec::new();
    world.wait_until("the rotation's spans from all three processes", || {
        let all = spans(&received);
        let Some(root) = all.iter().find(|s| {
            s.service == "dsops" && s.name == "dsops" && s.parent.is_empty()
                // `dsops rotate`'s trace is the one with the agent's spans in it.
                && all.iter().any(|o| o.trace_id == s.trace_id && o.name == "agent.step")
        }) else {
            return false;
        };
        trace = all.iter().filter(|s| s.trace_id == root.trace_id).cloned().collect();
        let names: BTreeSet<&str> = trace.iter().map(|s| s.name.as_str()).collect();
        wanted.iter().all(|w| names.contains(w))
            && trace.iter().filter(|s| s.name == "agent.step").count() >= 2
    });
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["dsops", "dsops-agent", "dsops-server"]),
        "one trace, three processes"
    );

    // Every span but the root has its parent in the same trace: the tree is connected.
    let by_id: HashMap<&[u8], &Span> = trace.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let roots: Vec<&Span> = trace.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {roots:?}");
    for span in &trace {
        if !span.parent.is_empty() {
            assert!(
                by_id.contains_key(span.parent.as_slice()),
                "{}/{}: its parent is not in the trace",
                span.service,
                span.name
            );
        }
    }
    // The edges that cross a process: the CLI → the node, the node → the agent.
    let parent_of = |span: &Span| {
        by_id.get(span.parent.as_slice()).map(|p| (p.service.as_str(), p.name.as_str()))
    };
    let rpc = trace.iter().find(|s| s.name == "admin.rpc").unwrap();
    assert_eq!(parent_of(rpc).map(|p| p.0), Some("dsops"), "the admin RPC's parent is the CLI");
    for step in trace.iter().filter(|s| s.name == "agent.step") {
        assert_eq!(parent_of(step), Some(("dsops-server", "dispatch")), "a step's parent");
    }
    for call in trace.iter().filter(|s| s.name == "adapter") {
        assert_eq!(
            parent_of(call),
            Some(("dsops-agent", "agent.step")),
            "an adapter call's parent"
        );
    }

    // No value went out with the spans.
    let exported: Vec<u8> =
        received.requests.lock().unwrap().iter().flat_map(|r| r.encode_to_vec()).collect();
    for (what, value) in [("old", first), ("new", new.as_str()), ("admin", &pg_admin.password)] {
        assert!(
            !exported.windows(value.len()).any(|w| w == value.as_bytes()),
            "the {what} password is in the exported spans"
        );
    }

    drop(processes);
    app.drop_user().await;
}
