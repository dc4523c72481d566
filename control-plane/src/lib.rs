//! The dsops control plane: the node that replicates the state with openraft on redb, serves
//! the admin, agent, join and raft services over one mutually authenticated TLS port, schedules
//! and dispatches rotation runs, and holds the cluster's PKI. Configuration is read through
//! `dsops-config`, the state machine is `dsops-state`, client identity is `dsops-identity`.
//!
//! ```text
//!  node (services, server, init/join)         gRPC in: authenticate → TryFrom → write/read → status
//!    └─▶ rotation (start, scheduler, dispatcher)
//!          └─▶ control (ControlPlane: the write path, connected agents, refusal tally)
//!                └─▶ raft (log store, state-machine store, network)   pki (CAs, server TLS, roles)
//! ```
//!
//! No module imports one above it: `control`, `rotation`, `raft` and `pki` import nothing from
//! `node`, and `control` nothing from `rotation`.

pub mod control;
pub mod metrics;
pub mod node;
pub mod pki;
pub mod reports_api;
// openraft's traits fix the (large) StorageError type of every storage function.
#[allow(clippy::result_large_err)]
pub mod raft;
pub mod rotation;
