//! The leader's notifier: reads the audit log after the replicated cursor, picks the events
//! people are told about, resolves each one's targets under the stored configuration (the
//! secret's policy `notifications`, then `rotation.defaults.notification`) to channels, and
//! queues one delivery per event and channel (`EnqueueNotifications`, which moves the cursor in
//! the same entry: a new leader neither skips nor repeats an event).
//!
//! | event | told to |
//! |---|---|
//! | `run.requested`, `run.completed`, `approval.approved` | `onSuccess` / `on_success` |
//! | `run.rolledback`, `run.quarantined`, `approval.denied`, `run.expired`, `approval.requested`, `breakglass.used`, `review.overdue`, `secret.overdue`, `promotion.halted` | `onFailure` / `on_failure` |
//! | `secret.expiring` | the policy's `beforeExpiry.targets` |
//!
//! `approval.requested` and `breakglass.used` also go, first, to the environment's
//! `rotation.approvals.<env>.notify` targets (its approvers).
//!
//! Events older than an hour when read (a cluster that was down, or one upgraded to a release
//! with notifications) are passed over, not delivered late. `log:` targets are written to this
//! node's log and recorded delivered.
//!
//! Each tick also sends the due pending deliveries to an agent of their channel's segment
//! connected here (they wait while none is); the agent's signed result (`RecordDelivery`,
//! verified by the state machine) marks a delivery delivered, schedules another try after a
//! capped exponential backoff, or makes it a dead letter.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsops_proto::wire::agent as wire;
use sha2::Digest;

use tokio::sync::watch;

use crate::control::{ControlPlane, WriteError};
use crate::rotation::start;
use dsops_config::config::Loaded;
use dsops_config::config::notify::resolve_target;
use dsops_state::{AuditEvent, Command, DeliveryStatus, OutboxEntry};

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(1);
/// Events read per tick.
const BATCH: usize = 500;
/// Events older than this when read are not delivered.
const STALE: u64 = 3_600_000;

/// What this node sent, by delivery id: the try and when (a try is sent again after
/// [`RESEND`] without a result, e.g. when the agent went away).
type Sent = Arc<Mutex<HashMap<String, (u32, Instant)>>>;

/// How long a try waits for its result before it is sent again.
const RESEND: Duration = Duration::from_secs(60);
/// Tries sent per tick at most.
const SEND_BATCH: usize = 256;

/// The notifier of one node: what it sent (a try is not sent twice while its result is on its
/// way), shared by its loop and [`Notifier::flush`].
#[derive(Clone)]
pub struct Notifier {
    control: ControlPlane,
    sent: Sent,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// The notifier of `control`'s node.
    pub fn new(control: ControlPlane) -> Notifier {
        Notifier { control, sent: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Runs the notifier until `shutdown`.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let control = self.control.clone();
        super::while_leading(control, shutdown, TICK, "notifier", move |control| {
            let sent = self.sent.clone();
            async move {
                tick(&control).await?;
                dispatch(&control, &sent).await
            }
        })
        .await;
    }

    /// Queues the deliveries of the events so far and sends them, until none is due that an
    /// agent connected here could take, or `limit` passed (the embedded default, before its
    /// command exits: what is left waits for the next command). `progress` hears how many are
    /// on their way. Returns how many are still waiting.
    pub async fn flush(&self, limit: Duration, progress: impl Fn(usize)) -> usize {
        let started = Instant::now();
        loop {
            if let Err(error) = tick(&self.control).await {
                tracing::warn!(%error, "notifier: could not queue deliveries");
            }
            if let Err(error) = dispatch(&self.control, &self.sent).await {
                tracing::warn!(%error, "notifier: could not send deliveries");
            }
            let now = dsops_proto::now_ms();
            let agents = self.control.agents().clone();
            let (waiting, unread) = self
                .control
                .read_local(|state| {
                    let waiting = state
                        .outbox
                        .values()
                        .filter(|e| e.status == DeliveryStatus::Pending && e.next_attempt_ms <= now)
                        .filter(|e| agents.takes_deliveries(&e.segment))
                        .count();
                    (waiting, state.notify_cursor < state.audit.head().seq)
                })
                .await;
            if (waiting == 0 && !unread) || started.elapsed() >= limit {
                return waiting;
            }
            progress(waiting);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the notifier of `control`'s node until `shutdown`.
pub async fn run(control: ControlPlane, shutdown: watch::Receiver<bool>) {
    Notifier::new(control).run(shutdown).await;
}

/// Sends each due pending delivery to an agent of its channel's segment connected here.
async fn dispatch(control: &ControlPlane, sent: &Sent) -> Result<(), String> {
    let now = dsops_proto::now_ms();
    let due: Vec<OutboxEntry> = control
        .read_local(|state| {
            state
                .outbox
                .values()
                .filter(|e| e.status == DeliveryStatus::Pending && e.next_attempt_ms <= now)
                .take(SEND_BATCH * 4)
                .cloned()
                .collect()
        })
        .await;
    if due.is_empty() {
        return Ok(());
    }
    let Some((_, loaded)) = start::applied_config(control).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let mut sent = sent.lock().expect("sent lock");
    sent.retain(|id, _| due.iter().any(|e| &e.id == id));
    let mut count = 0;
    for entry in due {
        let attempt = entry.attempts + 1;
        if sent.get(&entry.id).is_some_and(|(a, at)| *a == attempt && at.elapsed() < RESEND) {
            continue;
        }
        let Some(channel) = loaded.config.notifications.channels.get(&entry.channel) else {
            tracing::debug!(id = %entry.id, channel = %entry.channel, "notifier: the channel is no longer configured");
            continue;
        };
        let delivery = wire::Delivery {
            id: entry.id.clone(),
            event_id: entry.event_id.clone(),
            action: entry.action.clone(),
            subject: entry.subject.clone(),
            detail: entry.detail.clone(),
            actor: entry.actor.clone(),
            at: Some(dsops_proto::domain::timestamp_ms(entry.at_ms)),
            address: entry.address.clone().unwrap_or_default(),
            channel: entry.channel.clone(),
            channel_type: channel.kind.clone(),
            url: channel.url.clone().unwrap_or_default(),
            credential_ref: channel.credential.clone().unwrap_or_default(),
            attempt,
            host: channel.host.clone().unwrap_or_default(),
            port: channel.port.map_or(0, u32::from),
            from: channel.from.clone().unwrap_or_default(),
            username: channel.username.clone().unwrap_or_default(),
            ca_file: channel.ca_file.clone().unwrap_or_default(),
        };
        // Waits while no agent of the segment is connected here.
        if control.agents().send_delivery(&entry.segment, delivery).is_some() {
            sent.insert(entry.id.clone(), (attempt, Instant::now()));
            count += 1;
            if count >= SEND_BATCH {
                break;
            }
        }
    }
    Ok(())
}

/// Records an agent's signed delivery result (the state machine verifies the signature).
pub async fn record_result(
    control: &ControlPlane,
    agent: &dsops_state::AgentRecord,
    result: &wire::DeliveryResult,
) {
    if result.body.len() > 2048 || result.signature.len() > 64 {
        tracing::warn!(agent_id = %agent.agent_id, "notifier: oversized delivery result ignored");
        return;
    }
    let body_hex = dsops_proto::hex(&result.body);
    let request_id =
        format!("delivered-{}", &dsops_proto::hex(&sha2::Sha256::digest(&result.body))[..40]);
    let command = Command::RecordDelivery {
        agent_id: agent.agent_id.clone(),
        body_hex,
        signature_hex: dsops_proto::hex(&result.signature),
    };
    let actor = format!("agent:{}", agent.agent_id);
    match control.write(&actor, &request_id, command).await {
        Ok(_) => {}
        Err(WriteError::Rejected { message, .. }) => {
            tracing::info!(agent_id = %agent.agent_id, %message, "notifier: delivery result not recorded");
        }
        Err(error) => tracing::warn!(%error, "notifier: delivery result not committed"),
    }
}

/// Which list of targets an audit action goes to: `Some(true)` success, `Some(false)` failure.
pub fn routing(action: &str) -> Option<bool> {
    match action {
        "run.requested" | "run.completed" | "approval.approved" => Some(true),
        "run.rolledback" | "run.quarantined" | "approval.denied" | "run.expired"
        | "approval.requested" | "breakglass.used" | "review.overdue" | "secret.overdue"
        | "secret.expiring" | "promotion.halted" => Some(false),
        _ => None,
    }
}

/// The targets of an event on `env/key`, from its policy and the defaults, without repeats.
fn targets(loaded: &Loaded, action: &str, subject: &str, success: bool) -> Vec<String> {
    let policy = subject.split_once('/').and_then(|(env, key)| {
        let secret = loaded.config.envs.get(env)?.secrets.get(key)?;
        let name = secret.rotation.as_ref()?.policy.as_ref()?;
        loaded.catalog.rotation_policies.get(name)
    });
    let notifications = policy.and_then(|p| p.value.spec.notifications.as_ref());
    // A reminder ahead of the due time goes to whom the policy names for it, and no one else.
    if action == "secret.expiring" {
        return notifications
            .and_then(|n| n.before_expiry.as_ref())
            .map(|b| b.targets.clone())
            .unwrap_or_default();
    }
    let defaults = &loaded.config.rotation.defaults.notification;
    let mut all: Vec<String> =
        if success { defaults.on_success.clone() } else { defaults.on_failure.clone() };
    if let Some(notifications) = notifications {
        let list = if success { &notifications.on_success } else { &notifications.on_failure };
        all.splice(0..0, list.iter().cloned());
    }
    // The approvers of the environment hear at once when they are needed or bypassed.
    if matches!(action, "approval.requested" | "breakglass.used")
        && let Some(rule) =
            subject.split_once('/').and_then(|(env, _)| loaded.config.rotation.approvals.get(env))
    {
        all.splice(0..0, rule.notify.iter().cloned());
    }
    let mut seen = BTreeSet::new();
    all.retain(|t| seen.insert(t.clone()));
    all
}

/// The deliveries of one event.
pub fn deliveries(loaded: &Loaded, event: &AuditEvent) -> Vec<OutboxEntry> {
    let Some(success) = routing(&event.action) else { return Vec::new() };
    let notifications = &loaded.config.notifications;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for target in targets(loaded, &event.action, &event.subject, success) {
        let resolved = match resolve_target(&target, notifications, &loaded.catalog) {
            Ok(resolved) => resolved,
            Err(why) => {
                tracing::debug!(%target, %why, "notifier: target resolves to no channel");
                continue;
            }
        };
        for delivery in resolved {
            if !seen.insert((delivery.channel.clone(), delivery.address.clone())) {
                continue;
            }
            let (segment, status) = match notifications.channels.get(&delivery.channel) {
                Some(channel) => (channel.segment.clone(), DeliveryStatus::Pending),
                // `log:`: written here, now.
                None => {
                    tracing::info!(
                        target: "dsops::notification",
                        log = delivery.address.as_deref().unwrap_or_default(),
                        action = %event.action,
                        subject = %event.subject,
                        detail = %event.detail,
                        "notification"
                    );
                    (String::new(), DeliveryStatus::Delivered { at_ms: event.at_ms })
                }
            };
            out.push(OutboxEntry {
                id: format!("evt-{}.{}", event.seq, out.len()),
                event_id: format!("evt-{}", event.seq),
                action: event.action.clone(),
                subject: event.subject.clone(),
                detail: event.detail.clone(),
                actor: event.actor.clone(),
                at_ms: event.at_ms,
                channel: delivery.channel,
                address: delivery.address,
                segment,
                attempts: 0,
                next_attempt_ms: event.at_ms,
                status,
                last_error: String::new(),
                receipt: None,
            });
        }
    }
    out
}

async fn tick(control: &ControlPlane) -> Result<(), String> {
    let cursor = control.read_local(|s| s.notify_cursor).await;
    let history = control.audit_history(cursor, BATCH)?;
    let Some(last) = history.events.last().map(|e| e.seq) else { return Ok(()) };
    let Some((_, loaded)) = start::applied_config(control).await.map_err(|e| e.to_string())? else {
        // No configuration, no targets: move on.
        return enqueue(control, last, Vec::new()).await;
    };
    let now = dsops_proto::now_ms();
    let mut entries = Vec::new();
    for event in history.events.iter().filter(|e| e.at_ms + STALE >= now) {
        entries.extend(deliveries(&loaded, event));
    }
    enqueue(control, last, entries).await
}

async fn enqueue(
    control: &ControlPlane,
    through_seq: u64,
    entries: Vec<OutboxEntry>,
) -> Result<(), String> {
    let queued = entries.len();
    let command = Command::EnqueueNotifications { through_seq, entries };
    let actor = format!("node-{} notifier", control.node_id());
    match control.write(&actor, &format!("notify-{through_seq}"), command).await {
        Ok(_) => {
            if queued > 0 {
                tracing::debug!(through_seq, queued, "notifier: deliveries queued");
            }
            Ok(())
        }
        // Another leader got there first: the next tick reads from the new cursor.
        Err(WriteError::Rejected { .. }) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, action: &str) -> AuditEvent {
        AuditEvent {
            seq,
            index: seq,
            at_ms: 1_000,
            actor: "admin".into(),
            action: action.into(),
            subject: "prod/K".into(),
            detail: String::new(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn events_go_to_their_targets_and_approvers_hear_of_requests_and_broken_glass() {
        let yaml = "version: 1
secretStores:
  local: { type: file }
rotation:
  defaults:
    notification: { on_success: [\"webhook:ops\"], on_failure: [oncall, \"log:audit\"] }
  approvals:
    prod: { required: 1, notify: [\"webhook:approvers\"] }
notifications:
  channels:
    ops: { type: webhook, url: \"https://ops.example.com/h\", credential: \"store://local/n#s\" }
    approvers: { type: webhook, url: \"https://appr.example.com/h\", segment: seg-b, credential: \"store://local/n#s\" }
    pd: { type: pagerduty, credential: \"store://local/n#k\" }
  targets:
    oncall: [\"pagerduty:pd\"]
envs:
  prod:
    K:
      from: { store: \"store://local/app#k\" }
      rotation: { strategy: random, config: { length: 16 } }
";
        let loaded = dsops_config::config::load_str(yaml, "dsops.yaml", std::path::Path::new("."))
            .expect("valid");
        let channels = |action: &str| -> Vec<(String, String)> {
            deliveries(&loaded, &event(7, action))
                .into_iter()
                .map(|d| (d.channel, d.segment))
                .collect()
        };
        assert_eq!(channels("run.completed"), [("ops".to_owned(), "default".to_owned())]);
        assert_eq!(
            channels("breakglass.used"),
            [
                ("approvers".to_owned(), "seg-b".to_owned()),
                ("pd".to_owned(), "default".to_owned()),
                ("log".to_owned(), String::new()),
            ]
        );
        assert_eq!(channels("approval.requested")[0].0, "approvers");
        assert_eq!(channels("run.rolledback")[0].0, "pd", "approvers hear only of their business");
        assert_eq!(channels("promotion.halted")[0].0, "pd", "a halted line is a failure");
        assert!(channels("config.stored").is_empty());
        let ids: Vec<String> =
            deliveries(&loaded, &event(7, "breakglass.used")).into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["evt-7.0", "evt-7.1", "evt-7.2"]);
    }
}
