use std::time::{Duration, Instant};
use dsops_control_plane::node::NodeOptions;
use dsops_control_plane::state::Command;
use dsops_tests::TestCluster;

#[tokio::main]
async fn main() {
    let nodes: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let clients: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(64);
    let cluster = TestCluster::start_with(nodes, NodeOptions::default()).await;
    let leader = cluster.leader().await;
    let control = cluster.control(leader).clone();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let cmd = Command::AppendAudit { action: "bench".into(), subject: "x".into(), detail: String::new() };
                control.write("bench", &format!("inproc-{c:04}-{n:010}"), cmd).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks { total += t.await.unwrap(); }
    println!("nodes={nodes} clients={clients} writes/s={:.0}", total as f64 / start.elapsed().as_secs_f64());
}
