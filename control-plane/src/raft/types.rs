use std::io::Cursor;

use serde::{Deserialize, Serialize};

use dsops_state::{Request, Response};

/// A control-plane node id (never reused).
pub type NodeId = u64;

/// What one raft log entry carries: the requests proposed together. The leader batches the
/// requests that arrive while the previous entry is being made durable, so one fsync (and one
/// round of replication) serves many requests, as etcd does with its proposals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(pub Vec<Request>);

/// The responses to a proposal's requests, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub Vec<Response>);

impl Proposal {
    /// The log format its entry is written in: the highest its commands need.
    pub fn log_format(&self) -> u8 {
        self.0.iter().map(|r| r.command.log_format()).max().unwrap_or(1)
    }

    /// Roughly its bytes in the log and on the wire.
    pub fn approx_bytes(&self) -> usize {
        self.0.iter().map(|r| 128 + r.request_id.len() + r.command.approx_size()).sum()
    }
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proposal of {} request(s)", self.0.len())
    }
}

openraft::declare_raft_types!(
    /// The raft types of the dsops control plane.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
