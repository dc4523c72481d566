//! Refused TLS handshakes go into the audit log — at most one event per client address and
//! reason per minute, so a client that retries (or floods) cannot fill the replicated log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::ControlPlane;
use crate::pki::RefusalHook;
use crate::state::Command;

/// One audit event per address per this long.
const PER_ADDRESS: Duration = Duration::from_secs(60);
/// Addresses remembered at most (older ones are forgotten first).
const REMEMBERED: usize = 4096;

/// A hook that records refused handshakes on `control`'s audit log (only the leader can write;
/// a follower's refusals are in its log output).
pub(super) fn audit_hook(control: ControlPlane) -> RefusalHook {
    let seen: Arc<Mutex<HashMap<(IpAddr, String), Instant>>> = Arc::default();
    Arc::new(move |remote, reason| {
        {
            let mut seen = seen.lock().expect("refusal lock");
            let key = (remote.ip(), reason.clone());
            if seen.get(&key).is_some_and(|at| at.elapsed() < PER_ADDRESS) {
                return;
            }
            if seen.len() >= REMEMBERED {
                seen.retain(|_, at| at.elapsed() < PER_ADDRESS);
            }
            if seen.len() >= REMEMBERED {
                return;
            }
            seen.insert(key, Instant::now());
        }
        tracing::warn!(%remote, %reason, "TLS handshake refused");
        let control = control.clone();
        tokio::spawn(async move {
            let command = Command::AppendAudit {
                action: "tls.refused".to_owned(),
                subject: remote.to_string(),
                detail: reason,
            };
            let request_id = format!("tls-refused-{remote}-{}", crate::node::now_ms());
            let actor = format!("node-{}", control.node_id());
            if let Err(error) = control.write(&actor, &request_id, command).await {
                tracing::debug!(%error, "TLS refusal not audited here");
            }
        });
    })
}
