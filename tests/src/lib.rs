//! The dsops test kit: access to the real servers `scripts/test.sh` starts (PostgreSQL with
//! scram-sha-256, MariaDB, Redis with requirepass), and helpers that give each test its own
//! databases and roles so tests run in parallel and clean up after themselves.
//!
//! [`cluster::TestCluster`] runs N control-plane nodes in one process over real mTLS, with link
//! faults, kills and restarts.

pub mod acme_front;
pub mod agents;
pub mod cluster;
pub mod databases;
pub mod moto;
pub mod pebble;
pub mod probe;
pub mod processes;
pub mod promotion;
pub mod proxy;
pub mod receivers;
pub mod redis;
pub mod rotation;
pub mod runs;
pub mod simulators;
pub mod tls;
pub mod usage;

/// The etcd KV client (put only) used by the raft benchmark.
#[allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
pub mod services;

pub use cluster::{TestCluster, wait_for};
pub use runs::{RunView, StepView};
pub use services::{Service, unique_name};
