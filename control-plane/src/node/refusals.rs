//! Refusals a client can repeat at will (refused TLS handshakes, sessions of revoked agents) go
//! into the audit log at most once per key per minute, so no client can fill the replicated log.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::api::ControlPlane;
use crate::pki::RefusalHook;
use crate::state::Command;

/// One event per key per this long.
const WINDOW: Duration = Duration::from_secs(60);
/// Keys remembered at most (expired ones are forgotten first; beyond that, nothing more is let
/// through until some expire).
const REMEMBERED: usize = 4096;

/// Lets one event per key through per minute: how refusals that a client can repeat at will
/// reach the replicated audit log without flooding it.
#[derive(Debug)]
pub(super) struct Throttle<K> {
    seen: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> Throttle<K> {
    pub(super) fn new() -> Throttle<K> {
        Throttle { seen: Mutex::new(HashMap::new()) }
    }

    /// Whether an event for `key` may go through now (it is then counted).
    pub(super) fn admit(&self, key: K) -> bool {
        let mut seen = self.seen.lock().expect("throttle lock");
        if seen.get(&key).is_some_and(|at| at.elapsed() < WINDOW) {
            return false;
        }
        if seen.len() >= REMEMBERED {
            seen.retain(|_, at| at.elapsed() < WINDOW);
            if seen.len() >= REMEMBERED {
                return false;
            }
        }
        seen.insert(key, Instant::now());
        true
    }
}

/// A hook that records refused handshakes on `control`'s audit log (only the leader can write;
/// a follower's refusals are in its log output).
pub(super) fn audit_hook(control: ControlPlane) -> RefusalHook {
    let throttle: Throttle<(IpAddr, String)> = Throttle::new();
    Arc::new(move |remote, reason| {
        if !throttle.admit((remote.ip(), reason.clone())) {
            return;
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
