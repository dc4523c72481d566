//! The AppendStream client against a scripted peer on an in-memory connection: which calls go
//! on a stream, how late and stray replies are read, and the fallback to unary calls for a peer
//! that does not serve streams.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use dsops_proto::wire::raft::raft_peer_server::{RaftPeer, RaftPeerServer};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use openraft::{CommittedLeaderId, LogId};
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use super::*;

/// How the scripted peer answers an AppendStream frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// It does not serve AppendStream (a previous release).
    NoStreams,
    /// It answers every frame with its number.
    Answer,
    /// Before each answer, a reply to an earlier frame (as after a call given up on).
    LateFirst,
    /// It answers the second frame of a stream with a number never sent.
    StrayOnSecond,
    /// It never answers.
    Silent,
}

#[derive(Debug)]
struct Peer {
    script: Script,
    unary: AtomicU64,
    streams: AtomicU64,
    frames: Mutex<Vec<u64>>,
}

fn success() -> wire::AppendEntriesResponse {
    wire::AppendEntriesResponse {
        result: Some(wire::append_entries_response::Result::Success(wire::Success {})),
    }
}

/// The service in front of a [`Peer`].
#[derive(Debug, Clone)]
struct Scripted(Arc<Peer>);

#[tonic::async_trait]
impl RaftPeer for Scripted {
    async fn append_entries(
        &self,
        _request: Request<wire::AppendEntriesRequest>,
    ) -> Result<Response<wire::AppendEntriesResponse>, Status> {
        self.0.unary.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(success()))
    }

    type AppendStreamStream = ReceiverStream<Result<wire::AppendReply, Status>>;

    async fn append_stream(
        &self,
        request: Request<Streaming<wire::AppendFrame>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        if self.0.script == Script::NoStreams {
            return Err(Status::unimplemented("no AppendStream here"));
        }
        self.0.streams.fetch_add(1, Ordering::SeqCst);
        let (replies, stream) = mpsc::channel(4);
        let (peer, mut frames) = (self.0.clone(), request.into_inner());
        tokio::spawn(async move {
            let mut on_stream = 0;
            while let Some(Ok(frame)) = frames.next().await {
                on_stream += 1;
                peer.frames.lock().unwrap().push(frame.seq);
                let reply = |seq| {
                    Ok(wire::AppendReply {
                        seq,
                        result: Some(wire::append_reply::Result::Response(success())),
                    })
                };
                let answers = match peer.script {
                    Script::Answer => vec![reply(frame.seq)],
                    Script::LateFirst => vec![reply(frame.seq - 1), reply(frame.seq)],
                    Script::StrayOnSecond if on_stream == 2 => vec![reply(frame.seq + 5)],
                    Script::StrayOnSecond => vec![reply(frame.seq)],
                    Script::Silent | Script::NoStreams => vec![],
                };
                for answer in answers {
                    if replies.send(answer).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn vote(
        &self,
        _request: Request<wire::VoteRequest>,
    ) -> Result<Response<wire::VoteResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn install_snapshot(
        &self,
        _request: Request<Streaming<wire::SnapshotChunk>>,
    ) -> Result<Response<wire::InstallSnapshotResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

/// A client of a scripted peer over an in-memory connection.
async fn client_of(script: Script) -> (PeerClient, Arc<Peer>) {
    let peer = Arc::new(Peer {
        script,
        unary: AtomicU64::new(0),
        streams: AtomicU64::new(0),
        frames: Mutex::new(Vec::new()),
    });
    let (near, far) = tokio::io::duplex(1 << 20);
    let server = tonic::transport::Server::builder()
        .add_service(RaftPeerServer::new(Scripted(peer.clone())));
    tokio::spawn(server.serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(far))));
    let mut near = Some(near);
    let channel = Endpoint::from_static("http://peer.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let io = near.take().map(TokioIo::new).ok_or_else(|| std::io::Error::other("used"));
            async move { io }
        }))
        .await
        .unwrap();
    let client = PeerClient {
        me: 1,
        target: 2,
        channel: Ok(channel),
        filter: Arc::new(OpenLinks),
        appends: 0,
        stream: None,
        unary_only: false,
    };
    (client, peer)
}

fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 3)),
        entries: Vec::new(),
        leader_commit: None,
    }
}

fn option() -> RPCOption {
    RPCOption::new(Duration::from_millis(500))
}

#[tokio::test]
async fn a_replication_clients_calls_after_the_first_share_one_stream() {
    let (mut client, peer) = client_of(Script::Answer).await;
    for _ in 0..5 {
        let response = client.append_entries(heartbeat(), option()).await.unwrap();
        assert!(response.is_success());
    }
    assert_eq!(peer.unary.load(Ordering::SeqCst), 1, "the first call is unary");
    assert_eq!(peer.streams.load(Ordering::SeqCst), 1, "one stream for the rest");
    assert_eq!(*peer.frames.lock().unwrap(), [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_peer_without_streams_gets_unary_calls() {
    let (mut client, peer) = client_of(Script::NoStreams).await;
    for _ in 0..4 {
        assert!(client.append_entries(heartbeat(), option()).await.unwrap().is_success());
    }
    assert_eq!(peer.unary.load(Ordering::SeqCst), 4);
    assert!(client.unary_only, "asked once, not on every call");
}

#[tokio::test]
async fn a_late_reply_to_an_earlier_frame_is_skipped() {
    let (mut client, peer) = client_of(Script::LateFirst).await;
    for _ in 0..4 {
        assert!(client.append_entries(heartbeat(), option()).await.unwrap().is_success());
    }
    assert_eq!(peer.streams.load(Ordering::SeqCst), 1, "late replies do not end the stream");
    assert_eq!(*peer.frames.lock().unwrap(), [1, 2, 3]);
}

#[tokio::test]
async fn a_reply_to_a_frame_never_sent_ends_the_stream() {
    let (mut client, peer) = client_of(Script::StrayOnSecond).await;
    assert!(client.append_entries(heartbeat(), option()).await.is_ok(), "unary");
    assert!(client.append_entries(heartbeat(), option()).await.is_ok(), "frame 1");
    let stray = client.append_entries(heartbeat(), option()).await.unwrap_err();
    assert!(matches!(stray, RPCError::Network(_)), "{stray:?}");
    assert!(stray.to_string().contains("no such frame was sent"), "{stray}");
    assert!(client.stream.is_none());
    // The next call opens a new stream, numbered from 1 again.
    assert!(client.append_entries(heartbeat(), option()).await.is_ok());
    assert_eq!(peer.streams.load(Ordering::SeqCst), 2);
    assert_eq!(*peer.frames.lock().unwrap(), [1, 2, 1]);
}

#[tokio::test]
async fn a_peer_that_does_not_answer_in_time_is_unreachable() {
    let (mut client, _peer) = client_of(Script::Silent).await;
    assert!(client.append_entries(heartbeat(), option()).await.is_ok(), "unary");
    let silent = client
        .append_entries(heartbeat(), RPCOption::new(Duration::from_millis(100)))
        .await
        .unwrap_err();
    assert!(matches!(silent, RPCError::Unreachable(_)), "{silent:?}");
    assert!(client.stream.is_none(), "the stream is given up with the call");
}
