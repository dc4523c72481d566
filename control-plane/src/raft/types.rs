use std::io::Cursor;

use crate::state::{Request, Response};

/// A control-plane node id (never reused).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The raft types of the dsops control plane.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
