//! The admin calls that read the cluster's record (viewer): the agents with their sessions, the
//! audit log, the notification outbox and the agents' preflight of an environment.

use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;
use dsops_proto::wire::admin as wire;
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;

impl AdminService {
    pub(super) async fn preflight_impl(
        &self,
        request: Request<wire::PreflightRequest>,
    ) -> Result<Response<wire::PreflightResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let env = request.into_inner().env;
        if env.is_empty() || env.len() > 128 {
            return Err(ErrorCode::InvalidArgument.to_status("env: the environment"));
        }
        Ok(Response::new(crate::rotation::preflight::preflight(&self.control, &env).await?))
    }

    pub(super) async fn list_agents_impl(
        &self,
        request: Request<wire::ListAgentsRequest>,
    ) -> Result<Response<wire::ListAgentsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        // Sessions live on the leader: a current read makes sure this node is it.
        let records = self
            .control
            .read_current(|state| {
                state
                    .agents
                    .values()
                    .filter(|a| a.revoked_at_ms.is_none())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| e.to_status())?;
        let connected: std::collections::BTreeMap<String, _> = self
            .control
            .agents()
            .connected()
            .into_iter()
            .map(|c| (c.agent_id.clone(), c))
            .collect();
        let agents = records
            .into_iter()
            .map(|record| {
                let session = connected.get(&record.agent_id);
                let caps = session.and_then(|c| c.capabilities.clone()).unwrap_or_default();
                wire::AgentInfo {
                    agent_id: record.agent_id.clone(),
                    segment: record.segment.clone(),
                    version: session
                        .map(|c| c.version.clone())
                        .filter(|v| !v.is_empty())
                        .unwrap_or(record.version.clone()),
                    adapters: caps.adapters,
                    connected_since: session
                        .map(|c| dsops_proto::domain::timestamp_ms(c.connected_at_ms)),
                    last_heartbeat: session
                        .map(|c| dsops_proto::domain::timestamp_ms(c.last_heartbeat_ms)),
                    certificate_not_after: record
                        .cert_not_after_ms
                        .map(dsops_proto::domain::timestamp_ms),
                    hostname: record.hostname.clone(),
                    stores: caps.stores,
                    services: caps.services,
                    connected: session.is_some(),
                }
            })
            .collect();
        Ok(Response::new(wire::ListAgentsResponse { agents }))
    }

    pub(super) async fn list_audit_impl(
        &self,
        request: Request<wire::ListAuditRequest>,
    ) -> Result<Response<wire::ListAuditResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let wire::ListAuditRequest { after, limit, action_prefix, subject, from, subject_prefix } =
            request.into_inner();
        let limit = match limit {
            0 => 100,
            n => n.min(1_000) as usize,
        };
        let head_seq = self.control.read_local(|state| state.audit.head().seq).await;
        let after = match (after, from) {
            (0, Some(from)) => {
                let from_ms = u64::try_from(from.seconds).unwrap_or(0).saturating_mul(1000);
                self.control
                    .audit_seq_at(from_ms)
                    .map_err(|e| ErrorCode::Unavailable.to_status(e))?
                    .map_or(head_seq, |seq| seq.saturating_sub(1))
            }
            (0, None) => head_seq.saturating_sub(limit as u64),
            (after, _) => after,
        };
        let history = self
            .control
            .audit_history(after, limit)
            .map_err(|e| ErrorCode::Unavailable.to_status(e))?;
        let verified = history.verify().is_ok();
        let last_read = history.events.last().map_or(after, |e| e.seq);
        let events = history
            .events
            .iter()
            .filter(|e| e.action.starts_with(&action_prefix))
            .filter(|e| subject.is_empty() || e.subject == subject)
            .filter(|e| e.subject.starts_with(&subject_prefix))
            .map(|e| wire::AuditEntry {
                seq: e.seq,
                at: Some(dsops_proto::domain::timestamp_ms(e.at_ms)),
                actor: e.actor.clone(),
                action: e.action.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
                hash: e.hash.clone(),
            })
            .collect();
        Ok(Response::new(wire::ListAuditResponse { events, verified, head_seq, last_read }))
    }

    pub(super) async fn list_notifications_impl(
        &self,
        request: Request<wire::ListNotificationsRequest>,
    ) -> Result<Response<wire::ListNotificationsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let wire::ListNotificationsRequest { failed, limit } = request.into_inner();
        let limit = match limit {
            0 => 100,
            n => n.min(1_000) as usize,
        };
        let notifications = self
            .control
            .read_current(|state| {
                let mut entries: Vec<&dsops_state::OutboxEntry> = state
                    .outbox
                    .values()
                    .filter(|e| {
                        !failed || matches!(e.status, dsops_state::DeliveryStatus::Dead { .. })
                    })
                    .collect();
                entries.sort_by(|a, b| (b.at_ms, &b.id).cmp(&(a.at_ms, &a.id)));
                entries.into_iter().take(limit).map(notification_wire).collect()
            })
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(wire::ListNotificationsResponse { notifications }))
    }
}

/// An outbox entry for the API.
fn notification_wire(entry: &dsops_state::OutboxEntry) -> wire::Notification {
    use dsops_proto::domain::timestamp_ms;
    use dsops_state::DeliveryStatus;
    let (status, finished) = match entry.status {
        DeliveryStatus::Pending => ("pending", None),
        DeliveryStatus::Delivered { at_ms } => ("delivered", Some(at_ms)),
        DeliveryStatus::Dead { at_ms } => ("dead", Some(at_ms)),
    };
    wire::Notification {
        id: entry.id.clone(),
        event_id: entry.event_id.clone(),
        action: entry.action.clone(),
        subject: entry.subject.clone(),
        detail: entry.detail.clone(),
        channel: entry.channel.clone(),
        address: entry.address.clone().unwrap_or_default(),
        segment: entry.segment.clone(),
        status: status.to_owned(),
        attempts: entry.attempts,
        at: Some(timestamp_ms(entry.at_ms)),
        finished_at: finished.map(timestamp_ms),
        last_error: entry.last_error.clone(),
    }
}
