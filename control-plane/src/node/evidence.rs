//! The leader's signed checkpoints of the audit chain (see `dsops_state::evidence_apply`): every
//! `every`, also when nothing happened, it signs the chain head with the evidence key and the
//! log records the checkpoint as an audit event. Before its first checkpoint the cluster
//! registers generation 1 of the key with its certificate, and it starts the run counters once.

use std::time::Duration;

use dsops_state::{Command, EvidenceKey, SignedCheckpoint};
use ed25519_dalek::Signer;
use tokio::sync::watch;

use crate::control::{ControlPlane, WriteError};

/// How often the leader looks whether a checkpoint is due.
const TICK: Duration = Duration::from_secs(1);

/// Signs checkpoints while this node leads; until `shutdown`.
pub async fn run(control: ControlPlane, every: Duration, shutdown: watch::Receiver<bool>) {
    let tick = TICK.min(every);
    crate::rotation::while_leading(
        control,
        shutdown,
        tick,
        "checkpoints",
        move |control| async move { checkpoint(&control, every).await },
    )
    .await;
}

/// Registers the evidence key if the cluster has none, then checkpoints the head if the last
/// checkpoint is older than `every`.
pub async fn checkpoint(control: &ControlPlane, every: Duration) -> Result<(), String> {
    start_run_counters(control).await?;
    let (newest, last_at, head) = control
        .read_local(|s| {
            let newest = s.evidence_keys.values().next_back().cloned();
            (newest, s.last_checkpoint_at_ms, s.audit.head())
        })
        .await;
    let pki = control.pki();
    if !pki.peer.can_issue() {
        return Ok(()); // A voter that has not received the CA keys yet; the next leader signs.
    }
    let actor = format!("node-{}", control.node_id());
    let newest = match newest {
        Some(key) => key,
        None => register_next(control, &actor, 1).await?,
    };
    let now = dsops_proto::now_ms();
    if now < last_at.saturating_add(every.as_millis() as u64) {
        return Ok(());
    }
    let signing = pki.evidence_key(newest.generation).map_err(|e| e.to_string())?;
    if dsops_proto::hex(&signing.verifying_key().to_bytes()) != newest.public_key_hex {
        // The registered key is not the one this node derives (another CA key): register the
        // next generation, which this node can sign with.
        tracing::warn!(
            generation = newest.generation,
            "the registered evidence key is not this node's; registering the next generation"
        );
        register_next(control, &actor, newest.generation + 1).await?;
        return Ok(());
    }
    let mut checkpoint = SignedCheckpoint {
        generation: newest.generation,
        seq: head.seq,
        hash: head.hash,
        at_ms: head.at_ms,
        signature_hex: String::new(),
    };
    checkpoint.signature_hex = dsops_proto::hex(&signing.sign(&checkpoint.message()).to_bytes());
    let request_id = format!("checkpoint-{}-{}", checkpoint.generation, checkpoint.seq);
    match control.write(&actor, &request_id, Command::Checkpoint { checkpoint }).await {
        Ok(_) => Ok(()),
        Err(error) => Err(format!("checkpoint of event {}: {error}", head.seq)),
    }
}

/// Starts the replicated run counters `/metrics` reports if the log has not yet (a new cluster, or
/// one upgraded from a release that did not count).
pub async fn start_run_counters(control: &ControlPlane) -> Result<(), String> {
    if control.read_local(|s| s.run_counters.counting).await {
        return Ok(());
    }
    let actor = format!("node-{}", control.node_id());
    control
        .write(&actor, "start-run-counters", Command::StartRunCounters)
        .await
        .map(|_| ())
        .map_err(|e| format!("starting the run counters: {e}"))
}

/// Starts evidence key generation `newest + 1` for `actor` (`dsops evidence key rotate`) and
/// signs its first checkpoint; `request_id` makes a retry start one generation. Returns the new
/// key, the generation before it and the event its first checkpoint covers.
pub async fn rotate(
    control: &ControlPlane,
    actor: &str,
    request_id: &str,
) -> Result<(EvidenceKey, u32, u64), WriteError> {
    let unavailable = |e: String| WriteError::Unavailable(e);
    if !control.is_leader() {
        return Err(WriteError::NotLeader { leader: control.leader().map(|(_, a)| a) });
    }
    if !control.pki().peer.can_issue() {
        return Err(unavailable("this node holds no CA key to certify an evidence key".into()));
    }
    let newest = control.read_local(|s| s.evidence_keys.values().next_back().cloned()).await;
    let Some(previous) = newest else {
        return Err(unavailable(
            "the cluster has no evidence key yet (its leader registers one within seconds)".into(),
        ));
    };
    let write_id = format!("evidence-key-rotate-{request_id}");
    // A retry finds the generation its first attempt registered.
    let key = register(control, actor, previous.generation + 1, &write_id).await?;
    let previous = key.generation.saturating_sub(1);
    checkpoint(control, Duration::ZERO).await.map_err(unavailable)?;
    let signed = control
        .read_local(|s| s.last_checkpoint.clone())
        .await
        .filter(|c| c.generation == key.generation)
        .ok_or_else(|| unavailable("the new generation has not signed a checkpoint yet".into()))?;
    Ok((key, previous, signed.seq))
}

/// Registers evidence key `generation` (derived, with a new certificate) under `request_id`;
/// returns the newest key registered, which a retried request finds already there.
async fn register(
    control: &ControlPlane,
    actor: &str,
    generation: u32,
    request_id: &str,
) -> Result<EvidenceKey, WriteError> {
    let unavailable = |e: String| WriteError::Unavailable(e);
    let pki = control.pki();
    let signing = pki.evidence_key(generation).map_err(|e| unavailable(e.to_string()))?;
    let certificate_pem = pki
        .issue_evidence_certificate(generation, &signing)
        .map_err(|e| unavailable(e.to_string()))?;
    let key = EvidenceKey {
        generation,
        public_key_hex: dsops_proto::hex(&signing.verifying_key().to_bytes()),
        certificate_pem,
        registered_at_ms: 0,
    };
    let response =
        control.write(actor, request_id, Command::RegisterEvidenceKey { key: key.clone() }).await?;
    if response.duplicate {
        let newest = control.read_local(|s| s.evidence_keys.values().next_back().cloned()).await;
        return newest.ok_or_else(|| unavailable("no evidence key after registering one".into()));
    }
    tracing::info!(generation, "evidence key registered");
    Ok(key)
}

/// Registers evidence key `generation` (derived, with a new certificate) for the checkpoints.
async fn register_next(
    control: &ControlPlane,
    actor: &str,
    generation: u32,
) -> Result<EvidenceKey, String> {
    register(control, actor, generation, &format!("evidence-key-{generation}"))
        .await
        .map_err(|e| format!("registering evidence key generation {generation}: {e}"))
}
