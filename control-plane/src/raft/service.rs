//! The raft transport, server side: the `RaftPeer` gRPC service. Only callers with a peer
//! certificate are served (the raft TLS name already demands one; the check here also covers a
//! peer certificate arriving through the API name, and refuses every other role).

use dsops_proto::ErrorCode;
use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::raft_peer_server::RaftPeer;
use futures::StreamExt;
use openraft::{Raft, Snapshot};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{TypeConfig, convert};
use crate::pki::{Role, caller_of};

/// Serves raft RPCs for one node.
#[derive(Clone)]
pub struct RaftPeerService {
    raft: Raft<TypeConfig>,
    /// Turns true when the node stops serving: open AppendStreams end then, so that the
    /// server's graceful shutdown, which waits for every open call, is not held up by them.
    stopping: watch::Receiver<bool>,
}

impl std::fmt::Debug for RaftPeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftPeerService").finish_non_exhaustive()
    }
}

impl RaftPeerService {
    /// A service in front of `raft`, until `stopping` turns true.
    pub fn new(raft: Raft<TypeConfig>, stopping: watch::Receiver<bool>) -> RaftPeerService {
        RaftPeerService { raft, stopping }
    }

    fn authenticate<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let identity = caller_of(
            request,
            Role::Peer,
            "call the raft service",
            "a peer certificate is required",
        )?;
        self.member(&identity.name)?;
        Ok(identity.name)
    }

    /// Whether the peer certificate named `name` belongs to a current member.
    fn member(&self, name: &str) -> Result<(), Status> {
        // A peer certificate names its node (`node-<id>`); only current members may speak raft,
        // so a removed node's certificate is refused.
        let watch = self.raft.metrics();
        let metrics = watch.borrow();
        let membership = metrics.membership_config.membership();
        // A node that just joined knows no membership until the leader's log reaches
        // it: it accepts any peer of the cluster until then.
        let knows_none = membership.nodes().next().is_none();
        let member = knows_none
            || name
                .strip_prefix("node-")
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| membership.get_node(&id).is_some());
        if member {
            Ok(())
        } else {
            Err(ErrorCode::PermissionDenied
                .to_status(format!("{name} is not a member of this cluster")))
        }
    }

    /// Answers the frames of one AppendStream in order until the caller closes it, breaks the
    /// numbering, or stops being a member (checked again for every frame: a stream outlives
    /// membership changes), or raft fails a call, or this node stops.
    async fn serve_appends(
        self,
        peer: String,
        mut frames: Streaming<wire::AppendFrame>,
        replies: mpsc::Sender<Result<wire::AppendReply, Status>>,
    ) {
        use wire::append_reply::Result as R;
        let mut expected = 1u64;
        let mut stopping = self.stopping.clone();
        loop {
            let frame = tokio::select! {
                frame = frames.message() => frame,
                () = replies.closed() => return,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let Ok(Some(wire::AppendFrame { seq, request })) = frame else { return };
            if seq != expected {
                let refusal = ErrorCode::InvalidArgument
                    .to_status(format!("append frame {seq} out of order: expected {expected}"));
                let _ = replies.send(Err(refusal)).await;
                return;
            }
            expected += 1;
            if let Err(refusal) = self.member(&peer) {
                let _ = replies.send(Err(refusal)).await;
                return;
            }
            let result = match request.map(convert::append_request_from_wire) {
                None => R::Invalid("the frame carries no request".to_owned()),
                Some(Err(error)) => R::Invalid(error.to_string()),
                Some(Ok(rpc)) => match self.raft.append_entries(rpc).await {
                    Ok(response) => R::Response(convert::append_response_to_wire(&response)),
                    Err(error) => R::Unavailable(format!("raft: {error}")),
                },
            };
            // After anything but a response (a raft that failed a call is stopping), the stream
            // ends; the caller opens a new one for its next call.
            let last = !matches!(result, R::Response(_));
            let reply = wire::AppendReply { seq, result: Some(result) };
            if replies.send(Ok(reply)).await.is_err() || last {
                return;
            }
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

    type AppendStreamStream = ReceiverStream<Result<wire::AppendReply, Status>>;

    async fn append_stream(
        &self,
        request: Request<Streaming<wire::AppendFrame>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let peer = self.authenticate(&request)?;
        // One reply waits at most: the caller has one frame in flight, and one that sends more
        // is read no faster than its replies are taken.
        let (replies, stream) = mpsc::channel(1);
        tokio::spawn(self.clone().serve_appends(peer, request.into_inner(), replies));
        Ok(Response::new(ReceiverStream::new(stream)))
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
