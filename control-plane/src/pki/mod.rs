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
mod files;
mod identity;
mod tls;

pub use authority::{Authority, ClusterPki, NODE_NAMES, NodeCertificate, PkiError, new_csr};
pub use files::{write_private, write_public};
pub use identity::{CallerIdentity, Role, RoleNames};
pub use tls::{
    API_SERVER_NAME, ConnInfo, RAFT_SERVER_NAME, RefusalHook, ServerTls, TlsConn, TlsIncoming,
    client_config, pinned_client_config,
};

use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER bytes, lower-case hex: how a join token pins the cluster.
pub fn fingerprint(der: &[u8]) -> String {
    dsops_proto::hex(&Sha256::digest(der))
}
