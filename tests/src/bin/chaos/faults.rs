//! The faults: a node killed and restarted from disk, a node cut off, delayed links, an agent
//! killed and restarted, a node's clock stepped.

use std::collections::BTreeMap;
use std::time::Duration;

use dsops_control_plane::raft::LinkAction;
use dsops_tests::TestCluster;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::Mutex;

use crate::AGENTS;
use crate::agents::Agents;

/// Faults injected, by kind.
#[derive(Default)]
pub struct Tally(pub std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl Tally {
    pub fn add(&self, kind: &'static str) {
        *self.0.lock().expect("tally").entry(kind).or_default() += 1;
    }
}

/// The addresses of every node (agents know them all and follow the leader).
pub async fn addresses(cluster: &Mutex<TestCluster>) -> Vec<String> {
    let cluster = cluster.lock().await;
    cluster.ids().iter().map(|&id| cluster.address(id).to_owned()).collect()
}

/// One fault, then the repair after a pause; the kinds are counted in `tally`.
pub async fn inject(
    cluster: &Mutex<TestCluster>,
    agents: &Mutex<Agents>,
    rng: &mut StdRng,
    tally: &Tally,
) {
    let pause = Duration::from_millis(rng.random_range(1_000..4_000));
    let ids = cluster.lock().await.ids();
    let victim = ids[rng.random_range(0..ids.len())];
    match rng.random_range(0..5) {
        0 => {
            {
                let mut cluster = cluster.lock().await;
                if cluster.running().len() < ids.len() {
                    return;
                }
                cluster.kill(victim).await;
            }
            tally.add("node killed, restarted from disk");
            tokio::time::sleep(pause).await;
            cluster.lock().await.restart(victim).await;
        }
        1 => {
            let others: Vec<u64> = ids.iter().copied().filter(|id| *id != victim).collect();
            cluster.lock().await.partition(&[victim], &others);
            tally.add("node cut off from its peers");
            tokio::time::sleep(pause).await;
            cluster.lock().await.heal();
        }
        2 => {
            let delay = Duration::from_millis(rng.random_range(20..250));
            {
                let cluster = cluster.lock().await;
                for from in &ids {
                    for to in &ids {
                        if from != to && rng.random_bool(0.5) {
                            cluster.set_link(*from, *to, LinkAction::Delay(delay));
                        }
                    }
                }
            }
            tally.add("links delayed");
            tokio::time::sleep(pause).await;
            cluster.lock().await.heal();
        }
        3 => {
            // Mostly the leader's clock, whose time goes into the log and the deadlines; a
            // step of 10 s to 2 min either way, held 5-20 s, then stepped back (NTP's fix).
            let victim = if rng.random_bool(0.6) {
                let cluster = cluster.lock().await;
                let running = cluster.running();
                running
                    .first()
                    .and_then(|id| cluster.control(*id).metrics().current_leader)
                    .unwrap_or(victim)
            } else {
                victim
            };
            let step_ms =
                rng.random_range(10_000..120_000) * if rng.random_bool(0.5) { 1 } else { -1 };
            let hold = Duration::from_millis(rng.random_range(5_000..20_000));
            {
                let cluster = cluster.lock().await;
                if !cluster.running().contains(&victim) {
                    return;
                }
                cluster.control(victim).step_clock(step_ms);
            }
            tally.add(if step_ms > 0 {
                "node clock stepped forward"
            } else {
                "node clock stepped back"
            });
            tokio::time::sleep(hold).await;
            // Faults come one at a time, so the node still runs the process stepped above.
            cluster.lock().await.control(victim).step_clock(-step_ms);
        }
        _ => {
            let (name, _) = AGENTS[rng.random_range(0..AGENTS.len())];
            if !agents.lock().await.kill(name) {
                return;
            }
            tally.add("agent SIGKILLed and restarted");
            tokio::time::sleep(pause).await;
            let servers = addresses(cluster).await;
            agents.lock().await.spawn(name, &servers);
        }
    }
}
