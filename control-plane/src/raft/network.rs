//! The raft transport, client side: one gRPC channel per peer over mutual TLS, with an optional
//! link filter through which tests drop, delay or partition traffic.
//!
//! openraft asks for a client per peer for every replication task, every election and every
//! linearizable read (one per voter, each time): the clients of one peer share its channel, so a
//! read costs a call on an open HTTP/2 connection, not a new TCP connection and TLS handshake to
//! every follower.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::raft_peer_client::RaftPeerClient;
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot, Vote};
use rustls::ClientConfig;
use tonic::transport::Channel;

use super::convert;
use super::{NodeId, TypeConfig};
use dsops_identity::RAFT_SERVER_NAME;

/// What to do with one RPC from one node to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Send it.
    Pass,
    /// Fail it as if the peer were unreachable.
    Drop,
    /// Send it after a pause.
    Delay(Duration),
}

/// Decides the fate of each RPC between two nodes. Production uses [`OpenLinks`].
pub trait LinkFilter: Send + Sync + Debug + 'static {
    /// The action for an RPC from `from` to `to`.
    fn check(&self, from: NodeId, to: NodeId) -> LinkAction;
}

/// Every link open.
#[derive(Debug, Default)]
pub struct OpenLinks;

impl LinkFilter for OpenLinks {
    fn check(&self, _from: NodeId, _to: NodeId) -> LinkAction {
        LinkAction::Pass
    }
}

/// Snapshot chunks are at most this large.
const CHUNK: usize = 1 << 20;

/// Creates a client per peer.
#[derive(Debug, Clone)]
pub struct Network {
    me: NodeId,
    tls: Arc<ClientConfig>,
    filter: Arc<dyn LinkFilter>,
    /// Each peer's channel and the address it was made for (a peer that moved gets a new one).
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
}

impl Network {
    /// A network for node `me`, presenting the identity in `tls`.
    pub fn new(me: NodeId, tls: Arc<ClientConfig>, filter: Arc<dyn LinkFilter>) -> Network {
        Network { me, tls, filter, channels: Arc::default() }
    }

    /// The channel to `target` at `addr`: the one already made for that address, or a new one
    /// (connected on first use, and again after the connection fails).
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().expect("channels lock");
        if let Some((known, channel)) = channels.get(&target)
            && known == addr
        {
            return Ok(channel.clone());
        }
        let channel = dsops_identity::channel(addr, RAFT_SERVER_NAME, self.tls.clone())
            .map_err(|e| e.to_string())?;
        channels.insert(target, (addr.to_owned(), channel.clone()));
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            me: self.me,
            target,
            channel: self.channel(target, &node.addr),
            filter: self.filter.clone(),
        }
    }
}

/// The client of one peer.
#[derive(Debug)]
pub struct PeerClient {
    me: NodeId,
    target: NodeId,
    channel: Result<Channel, String>,
    filter: Arc<dyn LinkFilter>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkError(String);

impl PeerClient {
    /// Applies the link filter, then returns a client with the RPC's deadline.
    async fn client(&self) -> Result<RaftPeerClient<Channel>, Unreachable> {
        match self.filter.check(self.me, self.target) {
            LinkAction::Pass => {}
            LinkAction::Drop => {
                return Err(Unreachable::new(&LinkError(format!(
                    "link {} -> {} is down",
                    self.me, self.target
                ))));
            }
            LinkAction::Delay(pause) => tokio::time::sleep(pause).await,
        }
        let channel = self.channel.clone().map_err(|e| Unreachable::new(&LinkError(e)))?;
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(160 << 20)
            .max_encoding_message_size(160 << 20))
    }
}

/// Sorts a failed call: transport failures mean "unreachable, back off"; anything else is a
/// network error worth an immediate retry.
fn rpc_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

fn protocol<E: std::error::Error>(
    error: dsops_proto::ProtocolError,
) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&error))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let mut client = self.client().await?;
        let mut request = tonic::Request::new(convert::append_request_to_wire(&rpc));
        request.set_timeout(option.hard_ttl());
        let response = client.append_entries(request).await.map_err(rpc_error)?;
        convert::append_response_from_wire(response.into_inner()).map_err(protocol)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let mut client = self.client().await?;
        let mut request = tonic::Request::new(convert::vote_request_to_wire(&rpc));
        request.set_timeout(option.hard_ttl());
        let response = client.vote(request).await.map_err(rpc_error)?;
        convert::vote_response_from_wire(response.into_inner()).map_err(protocol)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, openraft::error::Fatal<NodeId>>>
    {
        let mut client = self.client().await.map_err(StreamingError::Unreachable)?;
        let wire_vote = convert::vote_to_wire(&vote);
        let mut chunks = vec![wire::SnapshotChunk {
            vote: Some(wire_vote),
            part: Some(wire::snapshot_chunk::Part::Meta(convert::snapshot_meta_to_wire(
                &snapshot.meta,
            ))),
        }];
        let data = snapshot.snapshot.into_inner();
        chunks.extend(data.chunks(CHUNK).map(|piece| wire::SnapshotChunk {
            vote: Some(wire_vote),
            part: Some(wire::snapshot_chunk::Part::Data(piece.to_vec())),
        }));
        let send = client.install_snapshot(tokio_stream::iter(chunks));
        let response = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            response = send => response,
        };
        let response =
            response.map_err(|status| match rpc_error::<openraft::error::Infallible>(status) {
                RPCError::Unreachable(e) => StreamingError::Unreachable(e),
                RPCError::Network(e) => StreamingError::Network(e),
                other => StreamingError::Network(NetworkError::new(&other)),
            })?;
        let wire::InstallSnapshotResponse { vote } = response.into_inner();
        let vote = convert::vote_from_wire(vote, "vote")
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        Ok(SnapshotResponse { vote })
    }
}
