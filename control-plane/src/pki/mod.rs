//! The cluster's public-key infrastructure: one root CA and three issuing CAs, one per trust
//! domain, so a certificate of one kind can never pass for another.
//!
//! ```text
//!                     root CA (created by `dsops-server init`; its key stays on that node)
//!          ┌─────────────────┼──────────────────┐
//!      peer CA            agent CA          operator CA
//!   node certificates   agent certificates  operator certificates (the CLI)
//!   (raft + serving)    (issue 5)
//! ```
//!
//! Servers present their node certificate with the peer CA; clients trust the peer CA only.
//! Which CA issued a client certificate decides its role ([`Role`]).

mod authority;
mod caller;
mod evidence;
mod identity;
mod tls;

pub use authority::{Authority, ClusterPki, NODE_NAMES};
pub use caller::caller_of;
pub use identity::{CallerIdentity, Role, RoleNames};
pub use tls::{ConnInfo, RefusalHook, ServerTls, TlsConn, TlsIncoming};
