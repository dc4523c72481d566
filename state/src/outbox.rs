//! The notification outbox: deliveries waiting for an agent of their channel's segment,
//! delivered, or dead after too many tries. Entries are added by the leader's notifier from the
//! audit log (`EnqueueNotifications` carries the audit sequence it has read through, so a new
//! leader neither skips nor repeats an event), and leave only by the bounds below.

use serde::{Deserialize, Serialize};

use dsops_proto::ErrorCode;

use super::{ApplyContext, Outcome, Request, State};

/// How many entries the outbox holds. Past it, delivered and dead entries go first (oldest
/// first); a new entry that still finds no room is dropped, and the drop audited.
pub const MAX_OUTBOX: usize = 10_000;
/// Tries before an entry is dead.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 8;

/// One delivery of one event to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Stable across retries and leaders: `<event id>.<n>`; what receivers deduplicate on.
    pub id: String,
    /// The event: `evt-<audit seq>`.
    pub event_id: String,
    /// What happened (`run.completed`, `approval.requested`, ...).
    pub action: String,
    /// The secret (`env/KEY`) or other subject.
    pub subject: String,
    /// The event's text (redacted by construction: audit details never hold a value).
    pub detail: String,
    /// Who acted.
    pub actor: String,
    /// When the event happened (log time).
    pub at_ms: u64,
    /// The channel (`notifications.channels.<name>`, or `log`).
    pub channel: String,
    /// The address within it (an email recipient, a Slack channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The segment whose agents deliver it.
    pub segment: String,
    /// Tries so far.
    pub attempts: u32,
    /// Not before this time (backoff).
    pub next_attempt_ms: u64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The last failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// The agent's signed result of the last try: the JSON body and its Ed25519 signature (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<(String, String)>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for (another) try.
    Pending,
    /// Delivered (at this time).
    Delivered {
        /// When.
        at_ms: u64,
    },
    /// Given up (at this time): a dead letter.
    Dead {
        /// When.
        at_ms: u64,
    },
}

/// Adds the deliveries of the audit events after the notifier's cursor, through `through_seq`.
pub(super) fn enqueue(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    through_seq: u64,
    entries: &[OutboxEntry],
) -> Outcome {
    let now = request.proposed_at_ms;
    if through_seq <= state.notify_cursor {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("the notifier already read through audit event {}", state.notify_cursor),
        );
    }
    let cursor = state.notify_cursor;
    let in_range = |entry: &OutboxEntry| {
        entry
            .event_id
            .strip_prefix("evt-")
            .and_then(|seq| seq.parse::<u64>().ok())
            .is_some_and(|seq| seq > cursor && seq <= through_seq)
    };
    if let Some(stray) = entries.iter().find(|e| !in_range(e) || state.outbox.contains_key(&e.id)) {
        return Outcome::rejected(
            ErrorCode::InvalidArgument,
            format!(
                "delivery {} is not of an event after {cursor} through {through_seq}, or exists",
                stray.id
            ),
        );
    }
    state.notify_cursor = through_seq;
    let mut dropped = 0;
    for entry in entries {
        make_room(state);
        // Every entry left is pending: the new one is dropped (and counted) rather than grow it.
        if state.outbox.len() >= MAX_OUTBOX {
            dropped += 1;
            continue;
        }
        state.outbox.insert(entry.id.clone(), entry.clone());
    }
    if dropped > 0 {
        state.audit.append(
            ctx.index,
            now,
            &request.actor,
            "notification.dropped",
            "outbox",
            &format!("{dropped} deliveries found the outbox full"),
        );
    }
    Outcome::NotificationsQueued { through_seq, queued: entries.len() as u32 }
}

/// The body of an agent's signed delivery result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct ResultBody {
    id: String,
    attempt: u32,
    outcome: String,
    detail: String,
}

/// The wait before try `attempts + 1`: 5 s doubling, at most an hour.
pub fn backoff_ms(attempts: u32) -> u64 {
    (5_000u64 << attempts.min(20)).min(3_600_000)
}

/// Records an agent's signed result of a delivery: delivered (or nothing to send), another try
/// after a backoff, or a dead letter (refused, or [`MAX_DELIVERY_ATTEMPTS`] tries). The agent
/// must be of the entry's segment and the signature its registered key's.
pub(super) fn record(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    agent_id: &str,
    body_hex: &str,
    signature_hex: &str,
) -> Outcome {
    let now = request.proposed_at_ms;
    let (body, segment) = match super::agent_apply::agent_signed(
        state,
        agent_id,
        body_hex,
        signature_hex,
        "delivery result",
    ) {
        Ok(verified) => verified,
        Err(refusal) => return refusal,
    };
    let Ok(result) = serde_json::from_slice::<ResultBody>(&body) else {
        return Outcome::rejected(ErrorCode::InvalidArgument, "delivery result: malformed body");
    };
    let Some(entry) = state.outbox.get_mut(&result.id) else {
        return Outcome::rejected(ErrorCode::NotFound, format!("no delivery {}", result.id));
    };
    if entry.status != DeliveryStatus::Pending || result.attempt != entry.attempts + 1 {
        return Outcome::rejected(
            ErrorCode::FailedPrecondition,
            format!("delivery {} is not waiting for try {}", result.id, result.attempt),
        );
    }
    if entry.segment != segment {
        return Outcome::rejected(
            ErrorCode::PermissionDenied,
            format!(
                "agent {agent_id} of segment {segment} cannot deliver {} (segment {})",
                result.id, entry.segment
            ),
        );
    }
    entry.attempts = result.attempt;
    entry.receipt = Some((body_hex.to_owned(), signature_hex.to_owned()));
    let detail: String = result.detail.chars().take(512).collect();
    let action = match result.outcome.as_str() {
        "delivered" | "skipped" => {
            entry.status = DeliveryStatus::Delivered { at_ms: now };
            entry.last_error.clear();
            "notification.delivered"
        }
        "retry" if entry.attempts < MAX_DELIVERY_ATTEMPTS => {
            entry.next_attempt_ms = now.saturating_add(backoff_ms(entry.attempts - 1));
            entry.last_error = detail.clone();
            ""
        }
        _ => {
            entry.status = DeliveryStatus::Dead { at_ms: now };
            entry.last_error = detail.clone();
            "notification.dead"
        }
    };
    let id = result.id.clone();
    let channel = entry.channel.clone();
    if !action.is_empty() {
        let text =
            format!("{id} via {channel} by agent {agent_id}, try {}: {detail}", result.attempt);
        state.audit.append(ctx.index, now, agent_id, action, &format!("notification {id}"), &text);
    }
    Outcome::DeliveryRecorded { id }
}

/// The oldest delivered or dead entry.
fn oldest_finished(state: &State) -> Option<String> {
    state
        .outbox
        .values()
        .filter_map(|e| match e.status {
            DeliveryStatus::Delivered { at_ms } | DeliveryStatus::Dead { at_ms } => {
                Some((at_ms, e.id.clone()))
            }
            DeliveryStatus::Pending => None,
        })
        .min()
        .map(|(_, id)| id)
}

/// Drops finished entries, oldest first, until there is room (or none is left to drop).
fn make_room(state: &mut State) {
    while state.outbox.len() >= MAX_OUTBOX {
        let Some(id) = oldest_finished(state) else { return };
        state.outbox.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, apply};

    fn entry(seq: u64, n: usize) -> OutboxEntry {
        OutboxEntry {
            id: format!("evt-{seq}.{n}"),
            event_id: format!("evt-{seq}"),
            action: "run.completed".into(),
            subject: "dev/K".into(),
            detail: String::new(),
            actor: "node-1".into(),
            at_ms: seq,
            channel: "hook".into(),
            address: None,
            segment: "default".into(),
            attempts: 0,
            next_attempt_ms: 0,
            status: DeliveryStatus::Pending,
            last_error: String::new(),
            receipt: None,
        }
    }

    fn enqueue(state: &mut State, index: u64, through: u64, entries: Vec<OutboxEntry>) -> Outcome {
        let request = Request {
            request_id: format!("r{index}"),
            actor: "node-1 notifier".into(),
            proposed_at_ms: 1_000 + index,
            command: Command::EnqueueNotifications { through_seq: through, entries },
        };
        apply(state, &request, ApplyContext { index }).outcome
    }

    /// A state with agent `agt-1` of segment `default` and one pending delivery `evt-1.0`.
    fn with_agent(key: &ed25519_dalek::SigningKey) -> State {
        let mut state = State::default();
        let public_key = dsops_proto::hex(&key.verifying_key().to_bytes());
        let request = Request {
            request_id: "reg".into(),
            actor: "test".into(),
            proposed_at_ms: 1,
            command: Command::RegisterAgent {
                agent_id: "agt-1".into(),
                segment: "default".into(),
                public_key,
            },
        };
        apply(&mut state, &request, ApplyContext { index: 1 });
        enqueue(&mut state, 2, 1, vec![entry(1, 0)]);
        state
    }

    fn result(
        state: &mut State,
        index: u64,
        key: &ed25519_dalek::SigningKey,
        attempt: u32,
        outcome: &str,
    ) -> Outcome {
        use ed25519_dalek::Signer;
        let body = serde_json::json!({"id": "evt-1.0", "attempt": attempt, "outcome": outcome, "detail": "answered 503", "at_ms": 5}).to_string();
        let signature = key.sign(body.as_bytes());
        let request = Request {
            request_id: format!("res{index}"),
            actor: "agent:agt-1".into(),
            proposed_at_ms: 10_000 * index,
            command: Command::RecordDelivery {
                agent_id: "agt-1".into(),
                body_hex: dsops_proto::hex(body.as_bytes()),
                signature_hex: dsops_proto::hex(&signature.to_bytes()),
            },
        };
        apply(state, &request, ApplyContext { index }).outcome
    }

    #[test]
    fn results_are_verified_retried_with_backoff_and_dead_after_the_last_try() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut state = with_agent(&key);
        // Another key's signature, or a try the entry is not waiting for, is refused.
        let forged = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(result(&mut state, 3, &forged, 1, "delivered"), Outcome::Rejected { .. }));
        assert!(matches!(result(&mut state, 4, &key, 2, "delivered"), Outcome::Rejected { .. }));
        for attempt in 1..MAX_DELIVERY_ATTEMPTS {
            let index = 4 + u64::from(attempt);
            assert!(matches!(
                result(&mut state, index, &key, attempt, "retry"),
                Outcome::DeliveryRecorded { .. }
            ));
            let entry = &state.outbox["evt-1.0"];
            assert_eq!(entry.status, DeliveryStatus::Pending);
            assert_eq!(entry.next_attempt_ms, 10_000 * index + backoff_ms(attempt - 1));
        }
        result(&mut state, 100, &key, MAX_DELIVERY_ATTEMPTS, "retry");
        assert!(matches!(state.outbox["evt-1.0"].status, DeliveryStatus::Dead { .. }));
        assert!(state.audit.recent().any(|e| e.action == "notification.dead"));
        assert_eq!(backoff_ms(0), 5_000);
        assert_eq!(backoff_ms(30), 3_600_000);
    }

    #[test]
    fn the_cursor_moves_once_and_the_outbox_is_bounded() {
        let mut state = State::default();
        assert!(matches!(
            enqueue(&mut state, 1, 5, vec![entry(3, 0), entry(5, 0)]),
            Outcome::NotificationsQueued { queued: 2, .. }
        ));
        assert_eq!(state.notify_cursor, 5);
        // The same range again (a second leader) is refused, as is an event outside the range.
        assert!(matches!(enqueue(&mut state, 2, 5, vec![entry(5, 1)]), Outcome::Rejected { .. }));
        assert!(matches!(enqueue(&mut state, 3, 9, vec![entry(4, 0)]), Outcome::Rejected { .. }));
        assert_eq!(state.outbox.len(), 2);
        // Full of pending deliveries: a new one is recorded dead only by replacing a finished
        // one; with none, it is not kept, and either way the outbox does not grow.
        let many: Vec<OutboxEntry> = (0..MAX_OUTBOX).map(|n| entry(10, n)).collect();
        enqueue(&mut state, 4, 10, many);
        assert_eq!(state.outbox.len(), MAX_OUTBOX);
        enqueue(&mut state, 5, 11, vec![entry(11, 0)]);
        assert_eq!(state.outbox.len(), MAX_OUTBOX);
        assert!(state.audit.recent().any(|e| e.action == "notification.dropped"));
    }
}
