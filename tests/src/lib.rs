//! The dsops test kit: access to the real servers `scripts/test.sh` starts (PostgreSQL with
//! scram-sha-256, MariaDB, Redis with requirepass), and helpers that give each test its own
//! databases and roles so tests run in parallel and clean up after themselves.
//!
//! Later issues add the cluster harness (`TestCluster`) here.

pub mod redis;
pub mod services;

pub use services::{Service, unique_name};
