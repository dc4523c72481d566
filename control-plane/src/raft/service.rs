//! The raft transport, server side: the `RaftPeer` gRPC service. Only callers with a peer
//! certificate are served (the raft TLS name already demands one; the check here also covers a
//! peer certificate arriving through the API name, and refuses every other role).

use dsops_proto::ErrorCode;
use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::raft_peer_server::RaftPeer;
use futures::StreamExt;
use openraft::{Raft, Snapshot};
use tonic::{Request, Response, Status, Streaming};

use super::{TypeConfig, convert};
use crate::pki::{Role, caller_of};

/// Serves raft RPCs for one node.
#[derive(Clone)]
pub struct RaftPeerService {
    raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftPeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftPeerService").finish_non_exhaustive()
    }
}

impl RaftPeerService {
    /// A service in front of `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> RaftPeerService {
        RaftPeerService { raft }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let identity = caller_of(
            request,
            Role::Peer,
            "call the raft service",
            "a peer certificate is required",
        )?;
        // A peer certificate names its node (`node-<id>`); only current members may speak raft,
        // so a removed node's certificate is refused.
        let watch = self.raft.metrics();
        let metrics = watch.borrow();
        let membership = metrics.membership_config.membership();
        // A node that just joined knows no membership until the leader's log reaches
        // it: it accepts any peer of the cluster until then.
        let knows_none = membership.nodes().next().is_none();
        let member = knows_none
            || identity
                .name
                .strip_prefix("node-")
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| membership.get_node(&id).is_some());
        if member {
            Ok(())
        } else {
            Err(ErrorCode::PermissionDenied
                .to_status(format!("{} is not a member of this cluster", identity.name)))
        }
    }
}

fn raft_status(error: impl std::fmt::Display) -> Status {
    ErrorCode::Unavailable.to_status(format!("raft: {error}"))
}

#[tonic::async_trait]
impl RaftPeer for RaftPeerService {
    async fn append_entries(
        &self,
        request: Request<wire::AppendEntriesRequest>,
    ) -> Result<Response<wire::AppendEntriesResponse>, Status> {
        self.authenticate(&request)?;
        let rpc = convert::append_request_from_wire(request.into_inner())?;
        let response = self.raft.append_entries(rpc).await.map_err(raft_status)?;
        Ok(Response::new(convert::append_response_to_wire(&response)))
    }

    async fn vote(
        &self,
        request: Request<wire::VoteRequest>,
    ) -> Result<Response<wire::VoteResponse>, Status> {
        self.authenticate(&request)?;
        let rpc = convert::vote_request_from_wire(request.into_inner())?;
        let response = self.raft.vote(rpc).await.map_err(raft_status)?;
        Ok(Response::new(convert::vote_response_to_wire(&response)))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<wire::SnapshotChunk>>,
    ) -> Result<Response<wire::InstallSnapshotResponse>, Status> {
        self.authenticate(&request)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.next().await.transpose()? else {
            return Err(ErrorCode::InvalidArgument.to_status("empty snapshot stream"));
        };
        let wire::SnapshotChunk { vote, part } = first;
        let vote = convert::vote_from_wire(vote, "vote")?;
        let meta = match part {
            Some(wire::snapshot_chunk::Part::Meta(meta)) => convert::snapshot_meta_from_wire(meta)?,
            _ => {
                return Err(ErrorCode::InvalidArgument
                    .to_status("the first snapshot chunk must carry the metadata"));
            }
        };
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await.transpose()? {
            match chunk.part {
                Some(wire::snapshot_chunk::Part::Data(bytes)) => data.extend_from_slice(&bytes),
                _ => {
                    return Err(ErrorCode::InvalidArgument
                        .to_status("only the first snapshot chunk may carry metadata"));
                }
            }
        }
        let snapshot = Snapshot { meta, snapshot: Box::new(std::io::Cursor::new(data)) };
        let response =
            self.raft.install_full_snapshot(vote, snapshot).await.map_err(raft_status)?;
        Ok(Response::new(wire::InstallSnapshotResponse {
            vote: Some(convert::vote_to_wire(&response.vote)),
        }))
    }
}
