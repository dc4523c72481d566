//! The leader's summaries of counted refusals ([`crate::control::refusals`]): every interval, one
//! audit event per kind of refusal and subject with the count, how many sources it came from and
//! a few of them. Refused TLS handshakes are counted through [`audit_hook`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::control::ControlPlane;
use crate::pki::RefusalHook;

/// Writes the tally's summaries every `interval` while this node leads; until `shutdown`. A
/// follower's refusals go to its log output (only the leader writes).
pub async fn run(control: ControlPlane, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if control.refusals().is_empty() {
            continue;
        }
        round += 1;
        let actor = format!("node-{}", control.node_id());
        let summaries = control.refusals().drain(interval);
        if !control.is_leader() {
            for summary in &summaries {
                tracing::warn!(?summary, "refusals on a follower (not in the audit log)");
            }
            continue;
        }
        let writes = summaries.into_iter().enumerate().map(|(i, command)| {
            let request_id =
                format!("refusals-{}-{}-{round}-{i}", control.node_id(), dsops_proto::now_ms());
            let (control, actor) = (control.clone(), actor.clone());
            async move {
                if let Err(error) = control.write(&actor, &request_id, command).await {
                    tracing::warn!(%error, "a refusal summary was not recorded");
                }
            }
        });
        futures::future::join_all(writes).await;
    }
}

/// A hook that counts refused handshakes on `control`'s tally, by reason, with the client's
/// address as the source.
pub(super) fn audit_hook(control: ControlPlane) -> RefusalHook {
    Arc::new(move |remote, reason| {
        tracing::debug!(%remote, %reason, "TLS handshake refused");
        let source = remote.ip().to_string();
        control.refusals().count("tls.refused", "handshakes", &reason, Some(&source), None);
    })
}
