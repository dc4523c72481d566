//! openraft's RPC types ⇄ the `dsops.raft.v1` wire messages. Converted once on each side: the
//! sender maps openraft values to wire messages; the receiver rejects malformed ones with a
//! [`ProtocolError`] (a peer speaking a broken protocol is refused, not trusted).

use std::collections::{BTreeMap, BTreeSet};

use dsops_proto::ProtocolError;
use dsops_proto::wire::raft as wire;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};

use super::Proposal;
use super::{NodeId, TypeConfig};

type Result<T> = std::result::Result<T, ProtocolError>;

/// A log id to the wire.
pub fn log_id_to_wire(id: &LogId<NodeId>) -> wire::LogId {
    wire::LogId { term: id.leader_id.term, leader_id: id.leader_id.node_id, index: id.index }
}

/// A log id from the wire.
pub fn log_id_from_wire(id: wire::LogId) -> LogId<NodeId> {
    let wire::LogId { term, leader_id, index } = id;
    LogId::new(CommittedLeaderId::new(term, leader_id), index)
}

/// A vote to the wire.
pub fn vote_to_wire(vote: &Vote<NodeId>) -> wire::Vote {
    wire::Vote {
        term: vote.leader_id.term,
        node_id: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

/// A vote from the wire (required).
pub fn vote_from_wire(vote: Option<wire::Vote>, field: &str) -> Result<Vote<NodeId>> {
    let wire::Vote { term, node_id, committed } =
        vote.ok_or_else(|| ProtocolError::missing(field))?;
    Ok(if committed { Vote::new_committed(term, node_id) } else { Vote::new(term, node_id) })
}

/// A membership to the wire.
pub fn membership_to_wire(membership: &Membership<NodeId, BasicNode>) -> wire::Membership {
    wire::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|set| wire::VoterSet { voter_ids: set.iter().copied().collect() })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| wire::Node { id: *id, address: node.addr.clone() })
            .collect(),
    }
}

/// A membership from the wire: one or two non-empty voter sets whose members all have nodes.
pub fn membership_from_wire(
    membership: wire::Membership,
    field: &str,
) -> Result<Membership<NodeId, BasicNode>> {
    let wire::Membership { configs, nodes } = membership;
    if configs.is_empty() || configs.len() > 2 {
        return Err(ProtocolError::invalid(
            format!("{field}.configs"),
            format!("must hold one or two voter sets, got {}", configs.len()),
        ));
    }
    let nodes: BTreeMap<NodeId, BasicNode> = nodes
        .into_iter()
        .map(|wire::Node { id, address }| (id, BasicNode { addr: address }))
        .collect();
    let configs: Vec<BTreeSet<NodeId>> = configs
        .into_iter()
        .map(|wire::VoterSet { voter_ids }| voter_ids.into_iter().collect())
        .collect();
    for voter in configs.iter().flatten() {
        if !nodes.contains_key(voter) {
            return Err(ProtocolError::invalid(
                format!("{field}.nodes"),
                format!("voter {voter} has no node entry"),
            ));
        }
    }
    Ok(Membership::new(configs, nodes))
}

/// An entry to the wire.
pub fn entry_to_wire(entry: &Entry<TypeConfig>) -> wire::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => wire::entry::Payload::Blank(wire::Blank {}),
        EntryPayload::Normal(request) => {
            wire::entry::Payload::Command(dsops_state::log_format::frame_as(
                request.log_format(),
                &serde_json::to_vec(request).expect("a Proposal always serializes"),
            ))
        }
        EntryPayload::Membership(membership) => {
            wire::entry::Payload::Membership(membership_to_wire(membership))
        }
    };
    wire::Entry { log_id: Some(log_id_to_wire(&entry.log_id)), payload: Some(payload) }
}

/// An entry from the wire.
pub fn entry_from_wire(entry: wire::Entry, field: &str) -> Result<Entry<TypeConfig>> {
    let wire::Entry { log_id, payload } = entry;
    let log_id =
        log_id_from_wire(log_id.ok_or_else(|| ProtocolError::missing(format!("{field}.log_id")))?);
    let payload = match payload.ok_or_else(|| ProtocolError::missing(format!("{field}.payload")))? {
        wire::entry::Payload::Blank(wire::Blank {}) => EntryPayload::Blank,
        wire::entry::Payload::Command(bytes) => {
            let invalid =
                |reason: String| ProtocolError::invalid(format!("{field}.command"), reason);
            let (_format, body) = dsops_state::log_format::unframe(&bytes)
                .map_err(|error| invalid(error.to_string()))?;
            let request: Proposal = serde_json::from_slice(body)
                .map_err(|error| invalid(format!("not a dsops command: {error}")))?;
            EntryPayload::Normal(request)
        }
        wire::entry::Payload::Membership(membership) => EntryPayload::Membership(
            membership_from_wire(membership, &format!("{field}.membership"))?,
        ),
    };
    Ok(Entry { log_id, payload })
}

/// AppendEntries to the wire.
pub fn append_request_to_wire(
    request: &AppendEntriesRequest<TypeConfig>,
) -> wire::AppendEntriesRequest {
    wire::AppendEntriesRequest {
        vote: Some(vote_to_wire(&request.vote)),
        prev_log_id: request.prev_log_id.as_ref().map(log_id_to_wire),
        entries: request.entries.iter().map(entry_to_wire).collect(),
        leader_commit: request.leader_commit.as_ref().map(log_id_to_wire),
    }
}

/// AppendEntries from the wire.
pub fn append_request_from_wire(
    request: wire::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>> {
    let wire::AppendEntriesRequest { vote, prev_log_id, entries, leader_commit } = request;
    let entries = entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| entry_from_wire(entry, &format!("entries[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    Ok(AppendEntriesRequest {
        vote: vote_from_wire(vote, "vote")?,
        prev_log_id: prev_log_id.map(log_id_from_wire),
        entries,
        leader_commit: leader_commit.map(log_id_from_wire),
    })
}

/// An AppendEntries answer to the wire.
pub fn append_response_to_wire(
    response: &AppendEntriesResponse<NodeId>,
) -> wire::AppendEntriesResponse {
    use wire::append_entries_response::Result as R;
    let result = match response {
        AppendEntriesResponse::Success => R::Success(wire::Success {}),
        AppendEntriesResponse::PartialSuccess(matching) => {
            R::PartialSuccess(wire::PartialSuccess {
                matching: matching.as_ref().map(log_id_to_wire),
            })
        }
        AppendEntriesResponse::Conflict => R::Conflict(wire::Conflict {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_wire(vote)),
    };
    wire::AppendEntriesResponse { result: Some(result) }
}

/// An AppendEntries answer from the wire.
pub fn append_response_from_wire(
    response: wire::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<NodeId>> {
    use wire::append_entries_response::Result as R;
    let wire::AppendEntriesResponse { result } = response;
    Ok(match result.ok_or_else(|| ProtocolError::missing("result"))? {
        R::Success(wire::Success {}) => AppendEntriesResponse::Success,
        R::PartialSuccess(wire::PartialSuccess { matching }) => {
            AppendEntriesResponse::PartialSuccess(matching.map(log_id_from_wire))
        }
        R::Conflict(wire::Conflict {}) => AppendEntriesResponse::Conflict,
        R::HigherVote(vote) => {
            AppendEntriesResponse::HigherVote(vote_from_wire(Some(vote), "higher_vote")?)
        }
    })
}

/// A vote request to the wire.
pub fn vote_request_to_wire(request: &VoteRequest<NodeId>) -> wire::VoteRequest {
    wire::VoteRequest {
        vote: Some(vote_to_wire(&request.vote)),
        last_log_id: request.last_log_id.as_ref().map(log_id_to_wire),
    }
}

/// A vote request from the wire.
pub fn vote_request_from_wire(request: wire::VoteRequest) -> Result<VoteRequest<NodeId>> {
    let wire::VoteRequest { vote, last_log_id } = request;
    Ok(VoteRequest {
        vote: vote_from_wire(vote, "vote")?,
        last_log_id: last_log_id.map(log_id_from_wire),
    })
}

/// A vote answer to the wire.
pub fn vote_response_to_wire(response: &VoteResponse<NodeId>) -> wire::VoteResponse {
    wire::VoteResponse {
        vote: Some(vote_to_wire(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_to_wire),
    }
}

/// A vote answer from the wire.
pub fn vote_response_from_wire(response: wire::VoteResponse) -> Result<VoteResponse<NodeId>> {
    let wire::VoteResponse { vote, vote_granted, last_log_id } = response;
    Ok(VoteResponse {
        vote: vote_from_wire(vote, "vote")?,
        vote_granted,
        last_log_id: last_log_id.map(log_id_from_wire),
    })
}

/// Snapshot metadata to the wire.
pub fn snapshot_meta_to_wire(meta: &SnapshotMeta<NodeId, BasicNode>) -> wire::SnapshotMeta {
    wire::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_wire),
        last_membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_wire),
        last_membership: Some(membership_to_wire(meta.last_membership.membership())),
        snapshot_id: meta.snapshot_id.clone(),
    }
}

/// Snapshot metadata from the wire.
pub fn snapshot_meta_from_wire(
    meta: wire::SnapshotMeta,
) -> Result<SnapshotMeta<NodeId, BasicNode>> {
    let wire::SnapshotMeta { last_log_id, last_membership_log_id, last_membership, snapshot_id } =
        meta;
    if snapshot_id.is_empty() {
        return Err(ProtocolError::missing("meta.snapshot_id"));
    }
    let membership = match last_membership {
        Some(m) if !m.configs.is_empty() => membership_from_wire(m, "meta.last_membership")?,
        _ => Membership::default(),
    };
    Ok(SnapshotMeta {
        last_log_id: last_log_id.map(log_id_from_wire),
        last_membership: StoredMembership::new(
            last_membership_log_id.map(log_id_from_wire),
            membership,
        ),
        snapshot_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsops_state::{Command, Request};

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(3, 1), index), payload }
    }

    #[test]
    fn append_entries_round_trip() {
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::new("c:3")),
                (4, BasicNode::new("d:4")),
            ]),
        );
        let request = Proposal(vec![Request {
            request_id: "r".into(),
            actor: "x".into(),
            proposed_at_ms: 9,
            command: Command::ForgetNode { node_id: 4 },
        }]);
        let original = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 2), 7)),
            entries: vec![
                entry(8, EntryPayload::Blank),
                entry(9, EntryPayload::Normal(request)),
                entry(10, EntryPayload::Membership(membership)),
            ],
            leader_commit: None,
        };
        let back = append_request_from_wire(append_request_to_wire(&original)).unwrap();
        assert_eq!(back.vote, original.vote);
        assert_eq!(back.prev_log_id, original.prev_log_id);
        assert_eq!(back.entries, original.entries);
        assert_eq!(back.leader_commit, None);
        for response in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::HigherVote(Vote::new(5, 2)),
        ] {
            assert_eq!(
                append_response_from_wire(append_response_to_wire(&response)).unwrap(),
                response
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let no_vote = wire::AppendEntriesRequest {
            vote: None,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        };
        assert_eq!(append_request_from_wire(no_vote).unwrap_err().field, "vote");
        let bad_command = wire::AppendEntriesRequest {
            vote: Some(wire::Vote { term: 1, node_id: 1, committed: true }),
            prev_log_id: None,
            entries: vec![wire::Entry {
                log_id: Some(wire::LogId { term: 1, leader_id: 1, index: 1 }),
                payload: Some(wire::entry::Payload::Command(b"{}".to_vec())),
            }],
            leader_commit: None,
        };
        assert_eq!(append_request_from_wire(bad_command).unwrap_err().field, "entries[0].command");
        let orphan_voter = wire::Membership {
            configs: vec![wire::VoterSet { voter_ids: vec![7] }],
            nodes: vec![],
        };
        assert!(
            membership_from_wire(orphan_voter, "m")
                .unwrap_err()
                .reason
                .contains("voter 7 has no node entry")
        );
    }
}
