//! `ExportEvidence`: the evidence bundle of a period (see `dsops_evidence`), built by the leader
//! (it may first sign a checkpoint covering the period's end) and sent in chunks.
//!
//! The bundle holds the audit events from the first one of the period through the first signed
//! checkpoint that covers its last one, every evidence key, the CA certificates, the agents'
//! receipt keys, the period's runs of the environment with their receipts and approvals, and the
//! configuration in force at the period's end.

use std::time::Duration;

use dsops_evidence::{AgentKey, BundleInput, BundleScope, ReceiptEvidence, RunEvidence};
use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;
use dsops_proto::wire::admin as wire;
use dsops_state::{AuditEvent, CHECKPOINT_ACTION, Run, SignedCheckpoint, State};
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;
use crate::control::{ControlPlane, WriteError};

/// The most events one bundle holds: a longer period is exported in parts.
pub const MAX_BUNDLE_EVENTS: usize = 1_000_000;
/// The size of each chunk sent.
pub const CHUNK: usize = 1 << 20;
/// Events read from the store at a time.
const PAGE: usize = 10_000;

pub(super) fn ms(t: Option<prost_types::Timestamp>, what: &str) -> Result<u64, Status> {
    let t = t.ok_or_else(|| ErrorCode::InvalidArgument.to_status(format!("{what}: required")))?;
    u64::try_from(t.seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .and_then(|ms| {
            ms.checked_add(u64::try_from(t.nanos.clamp(0, 999_999_999)).ok()? / 1_000_000)
        })
        .ok_or_else(|| ErrorCode::InvalidArgument.to_status(format!("{what}: before 1970")))
}

/// The chunks of a bundle, as the RPC streams them.
pub type ChunkStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<wire::EvidenceChunk, Status>> + Send>>;

impl AdminService {
    /// `RotateEvidenceKey` (cluster admin): the next evidence key generation.
    pub(super) async fn rotate_evidence_key_impl(
        &self,
        request: Request<wire::RotateEvidenceKeyRequest>,
    ) -> Result<Response<wire::RotateEvidenceKeyResponse>, Status> {
        let caller = self.authorize(&request, Permission::Cluster).await?;
        let request_id = request.into_inner().request_id;
        if request_id.is_empty() || request_id.len() > 128 {
            return Err(ErrorCode::InvalidArgument.to_status("request_id: 1 to 128 bytes"));
        }
        let (key, previous_generation, first_checkpoint_seq) =
            super::evidence::rotate(&self.control, &caller.name, &request_id)
                .await
                .map_err(|e| e.to_status())?;
        Ok(Response::new(wire::RotateEvidenceKeyResponse {
            generation: key.generation,
            public_key_hex: key.public_key_hex,
            previous_generation,
            first_checkpoint_seq,
        }))
    }

    pub(super) async fn export_evidence_impl(
        &self,
        request: Request<wire::ExportEvidenceRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let caller = self.authorize(&request, Permission::Read).await?;
        let wire::ExportEvidenceRequest { env, from, to, request_id: _ } = request.into_inner();
        let (from_ms, to_ms) = (ms(from, "from")?, ms(to, "to")?);
        if from_ms >= to_ms {
            return Err(ErrorCode::InvalidArgument.to_status("from: must be before to"));
        }
        if env.len() > 128 {
            return Err(ErrorCode::InvalidArgument.to_status("env: at most 128 bytes"));
        }
        let bundle = export(&self.control, &caller.name, &env, from_ms, to_ms).await?;
        let total = bundle.len() as u64;
        let chunks: Vec<Result<wire::EvidenceChunk, Status>> = bundle
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, data)| {
                let total = if i == 0 { total } else { 0 };
                Ok(wire::EvidenceChunk { data: data.to_vec(), total })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

/// The first event at or after `from_ms` and the last before `to_ms` that is not itself a
/// checkpoint (sequence numbers), reading the store page by page; `None` when the period holds
/// no event. Checkpoints need no checkpoint over them (their content is signed), so exporting
/// the same quiet period again signs nothing new: a caller cannot make the log grow by
/// repeating an export.
fn period(control: &ControlPlane, from_ms: u64, to_ms: u64) -> Result<Option<(u64, u64)>, Status> {
    let unavailable = |e: String| ErrorCode::Unavailable.to_status(e);
    let Some(first) = control.audit_seq_at(from_ms).map_err(unavailable)? else {
        return Ok(None);
    };
    // (any event of the period, the last one that is not a checkpoint)
    let (mut after, mut seen, mut last) = (first.saturating_sub(1), false, None);
    let found = |seen: bool, last: Option<u64>| seen.then(|| (first, last.unwrap_or(first)));
    loop {
        let page = control.audit_history(after, PAGE).map_err(unavailable)?;
        for event in &page.events {
            if event.at_ms >= to_ms {
                return Ok(found(seen, last));
            }
            seen = true;
            if event.action != CHECKPOINT_ACTION {
                last = Some(event.seq);
            }
        }
        match page.events.last() {
            Some(event) if page.events.len() == PAGE => after = event.seq,
            _ => return Ok(found(seen, last)),
        }
    }
}

/// Events `first..` through the first checkpoint covering `through`, if there is one yet.
fn events_through(
    control: &ControlPlane,
    first: u64,
    through: u64,
) -> Result<Option<Vec<AuditEvent>>, Status> {
    let mut events = Vec::new();
    let mut after = first.saturating_sub(1);
    loop {
        let page =
            control.audit_history(after, PAGE).map_err(|e| ErrorCode::Unavailable.to_status(e))?;
        for event in page.events {
            let covers = event.action == CHECKPOINT_ACTION
                && SignedCheckpoint::from_detail(&event.detail).is_some_and(|c| c.seq >= through);
            after = event.seq;
            events.push(event);
            if covers {
                return Ok(Some(events));
            }
            if events.len() > MAX_BUNDLE_EVENTS {
                return Err(ErrorCode::InvalidArgument.to_status(format!(
                    "the period holds more than {MAX_BUNDLE_EVENTS} audit events: export it in parts"
                )));
            }
        }
        if after == 0
            || control.audit_history(after, 1).map(|p| p.events.is_empty()).unwrap_or(true)
        {
            return Ok(None);
        }
    }
}

pub(crate) async fn export(
    control: &ControlPlane,
    actor: &str,
    env: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<u8>, Status> {
    if !control.is_leader() {
        return Err(WriteError::NotLeader { leader: control.leader().map(|(_, a)| a) }.to_status());
    }
    let Some((first, through)) = period(control, from_ms, to_ms)? else {
        return Err(ErrorCode::NotFound.to_status("the period holds no audit event"));
    };
    let mut events = events_through(control, first, through)?;
    // The period ends after the last checkpoint: sign one now (the first call may only
    // register the evidence key).
    for _ in 0..3 {
        if events.is_some() {
            break;
        }
        super::evidence::checkpoint(control, Duration::ZERO)
            .await
            .map_err(|e| ErrorCode::Unavailable.to_status(e))?;
        events = events_through(control, first, through)?;
    }
    let events = events.ok_or_else(|| {
        ErrorCode::Unavailable.to_status("no signed checkpoint covers the period yet; try again")
    })?;
    let pki = control.pki();
    let (keys, agents, runs, config) = control
        .read_local(|s| {
            let keys: Vec<_> = s.evidence_keys.values().cloned().collect();
            let agents = s
                .agents
                .values()
                .map(|a| AgentKey {
                    agent_id: a.agent_id.clone(),
                    segment: a.segment.clone(),
                    public_key_hex: a.public_key.clone(),
                })
                .collect::<Vec<_>>();
            let runs = s
                .runs
                .values()
                .filter(|r| env.is_empty() || r.env == env)
                .filter(|r| (from_ms..to_ms).contains(&r.requested_at_ms))
                .map(run_evidence)
                .collect::<Vec<_>>();
            (keys, agents, runs, config_at(s, to_ms))
        })
        .await;
    let extra = crate::rotation::compliance::bundle_files(control, env, from_ms, to_ms)
        .await
        .map_err(|e| e.to_status())?;
    let newest = keys
        .last()
        .ok_or_else(|| ErrorCode::Unavailable.to_status("no evidence key is registered yet"))?;
    let signing = pki
        .evidence_key(newest.generation)
        .map_err(|e| ErrorCode::Internal.to_status(e.to_string()))?;
    let input = BundleInput {
        scope: BundleScope {
            format: dsops_evidence::FORMAT,
            cluster_id: pki.cluster_id.clone(),
            env: env.to_owned(),
            from_ms,
            to_ms,
            created_at_ms: dsops_proto::now_ms(),
            created_by: actor.to_owned(),
            generation: newest.generation,
            first_seq: first,
            through_seq: through,
        },
        events,
        evidence_keys: keys.clone(),
        root_ca_pem: pki.root_cert_pem.clone(),
        peer_ca_pem: pki.peer.cert_pem.clone(),
        agent_ca_pem: pki.agent.cert_pem.clone(),
        operator_ca_pem: pki.operator_cert_pem.clone(),
        agents,
        runs,
        config_yaml: config,
        extra,
    };
    tokio::task::spawn_blocking(move || dsops_evidence::write(&input, &signing))
        .await
        .map_err(|e| ErrorCode::Internal.to_status(e.to_string()))?
        .map_err(|e| ErrorCode::Internal.to_status(e.to_string()))
}

/// The configuration stored last before `to_ms`.
fn config_at(state: &State, to_ms: u64) -> Option<String> {
    state.configs.iter().rev().find(|c| c.applied_at_ms < to_ms).map(|c| c.config_yaml.clone())
}

fn run_evidence(run: &Run) -> RunEvidence {
    let approval = run.approval.as_ref();
    RunEvidence {
        run_id: run.id.clone(),
        env: run.env.clone(),
        key: run.key.clone(),
        phase: run.phase.name().to_owned(),
        requested_by: run.requested_by.clone(),
        reason: run.reason.clone(),
        requested_at_ms: run.requested_at_ms,
        finished_at_ms: run.finished_at_ms,
        receipts: run
            .receipts
            .iter()
            .map(|r| ReceiptEvidence {
                step: format!("{:?}", r.step).to_lowercase(),
                attempt: r.attempt,
                agent_id: r.agent_id.clone(),
                at_ms: r.at_ms,
                body_hex: r.body_hex.clone(),
                signature_hex: r.signature_hex.clone(),
            })
            .collect(),
        plan_digest: approval.map(|a| a.plan_digest.clone()),
        approval_round: approval.map_or(0, |a| a.round),
        decisions: approval
            .map(|a| a.past.iter().chain(&a.decisions).cloned().collect())
            .unwrap_or_default(),
    }
}
