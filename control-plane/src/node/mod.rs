//! A control-plane node: its data directory, how it is created (`init`, `join`), how it runs
//! (raft + TLS listener + services), and the API the services share.

mod admin_approvals;
pub(crate) mod admin_evidence;
mod admin_gate;
mod admin_operators;
mod admin_promotion;
mod admin_reads;
mod admin_reports;
mod admin_service;
pub mod admin_tokens;
mod agent_service;
mod config_upload;
pub mod evidence;
mod fatal;
pub mod health;
mod init;
mod join_service;
mod keys;
mod layout;
mod promote;
mod refusals;
mod server;
mod token_bucket;

pub use admin_service::AdminService;
pub use agent_service::{AGENT_CERT_VALIDITY, AgentService, HEARTBEAT, SILENCE};
pub use init::{Initialized, init, join};
pub use join_service::JoinService;
pub use layout::{DataDir, NodeFile};
pub use promote::target_voters;
pub use server::{NodeOptions, RunningNode, start, start_local};
