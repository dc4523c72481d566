//! The raft transport, client side: one gRPC channel per peer over mutual TLS, with an optional
//! link filter through which tests drop, delay or partition traffic.
//!
//! openraft asks for a client per peer for every replication task, every election and every
//! linearizable read (one per voter, each time): the clients of one peer share its channel, so a
//! read costs a call on an open HTTP/2 connection, not a new TCP connection and TLS handshake to
//! every follower.
//!
//! A client that calls AppendEntries more than once (a replication task's, which openraft keeps
//! for as long as it replicates to that peer) moves to an `AppendStream`: one HTTP/2 stream that
//! carries each call as a numbered frame and each answer as a numbered reply, instead of a new
//! stream with its own headers and trailers per call. openraft sends one call at a time per
//! follower and may give up on one (its timer), so a reply numbered lower than the frame just
//! sent is the late answer to a call given up on, and skipped; anything else out of order ends
//! the stream, and the next call opens another. A peer of an older release answers
//! UNIMPLEMENTED, and that client stays with unary calls.

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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
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
            appends: 0,
            stream: None,
            unary_only: false,
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
    /// AppendEntries calls made: the first is unary (openraft makes a client for each
    /// linearizable read and calls it once), later ones go on [`PeerClient::stream`].
    appends: u64,
    /// The open AppendStream, if any.
    stream: Option<AppendStream>,
    /// The peer does not serve AppendStream (an older release).
    unary_only: bool,
}

/// One AppendStream to a peer.
#[derive(Debug)]
struct AppendStream {
    frames: mpsc::Sender<wire::AppendFrame>,
    replies: tonic::Streaming<wire::AppendReply>,
    /// The number of the last frame sent.
    sent: u64,
}

/// Why a call on an AppendStream failed; the stream is dropped either way.
enum StreamFault {
    /// The stream or its connection ended, or the reply did not come in time.
    Gone(String),
    /// The peer answered with a status.
    Status(tonic::Status),
    /// The peer broke the protocol.
    Protocol(String),
}

impl AppendStream {
    /// Opens a stream on `client`.
    async fn open(client: &mut RaftPeerClient<Channel>) -> Result<AppendStream, tonic::Status> {
        let (frames, outgoing) = mpsc::channel(1);
        let replies = client.append_stream(ReceiverStream::new(outgoing)).await?.into_inner();
        Ok(AppendStream { frames, replies, sent: 0 })
    }

    /// Sends `request` as the next frame and waits up to `ttl` for its reply.
    async fn call(
        &mut self,
        request: wire::AppendEntriesRequest,
        ttl: Duration,
    ) -> Result<wire::append_reply::Result, StreamFault> {
        let seq = self.sent + 1;
        let frame = wire::AppendFrame { seq, request: Some(request) };
        if self.frames.send(frame).await.is_err() {
            return Err(StreamFault::Gone("the append stream closed".to_owned()));
        }
        self.sent = seq;
        loop {
            let reply = match tokio::time::timeout(ttl, self.replies.message()).await {
                Err(_) => return Err(StreamFault::Gone(format!("no reply within {ttl:?}"))),
                Ok(Err(status)) => return Err(StreamFault::Status(status)),
                Ok(Ok(None)) => return Err(StreamFault::Gone("the append stream ended".into())),
                Ok(Ok(Some(reply))) => reply,
            };
            match reply.seq.cmp(&seq) {
                // The answer to a call openraft gave up on.
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => {
                    return reply
                        .result
                        .ok_or_else(|| StreamFault::Protocol(format!("reply {seq} is empty")));
                }
                std::cmp::Ordering::Greater => {
                    return Err(StreamFault::Protocol(format!(
                        "reply {} to frame {seq}: no such frame was sent",
                        reply.seq
                    )));
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkError(String);

impl PeerClient {
    /// Opens [`PeerClient::stream`], or learns that the peer has none to open
    /// ([`PeerClient::unary_only`]).
    async fn open_stream<E: std::error::Error>(
        &mut self,
        client: &mut RaftPeerClient<Channel>,
        ttl: Duration,
    ) -> Result<(), RPCError<NodeId, BasicNode, E>> {
        match tokio::time::timeout(ttl, AppendStream::open(client)).await {
            Ok(Ok(stream)) => self.stream = Some(stream),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                self.unary_only = true;
            }
            Ok(Err(status)) => return Err(rpc_error(status)),
            Err(_) => {
                let reason = format!("no append stream within {ttl:?}");
                return Err(RPCError::Unreachable(Unreachable::new(&LinkError(reason))));
            }
        }
        Ok(())
    }

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

/// What a call on an AppendStream comes to, as the unary call's result would.
fn stream_answer(
    result: Result<wire::append_reply::Result, StreamFault>,
) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
    use wire::append_reply::Result as R;
    match result {
        Ok(R::Response(response)) => convert::append_response_from_wire(response).map_err(protocol),
        Ok(R::Unavailable(reason)) | Err(StreamFault::Gone(reason)) => {
            Err(RPCError::Unreachable(Unreachable::new(&LinkError(reason))))
        }
        Ok(R::Invalid(reason)) | Err(StreamFault::Protocol(reason)) => {
            Err(RPCError::Network(NetworkError::new(&LinkError(reason))))
        }
        Err(StreamFault::Status(status)) => Err(rpc_error(status)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let mut client = self.client().await?;
        let request = convert::append_request_to_wire(&rpc);
        self.appends += 1;
        if self.appends > 1 && !self.unary_only {
            if self.stream.is_none() {
                self.open_stream(&mut client, option.hard_ttl()).await?;
            }
            if let Some(stream) = self.stream.as_mut() {
                let result = stream.call(request, option.hard_ttl()).await;
                // The peer ends a stream after any answer but a response; so does this side.
                if !matches!(result, Ok(wire::append_reply::Result::Response(_))) {
                    self.stream = None;
                }
                return stream_answer(result);
            }
        }
        let mut request = tonic::Request::new(request);
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

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
