//! The tally of refusals a client can repeat at will — refused TLS handshakes, sessions of
//! unknown or revoked agents, receipts refused before they cost a raft write. They are counted
//! here, not written one by one; the node's summary loop (`node::refusals`) writes one audit
//! event per kind of refusal and subject every interval, so a client (from one address or
//! thousands) can neither fill the replicated log nor hide in it.
//!
//! The tally itself is bounded: past [`MAX_KEYS`] distinct (action, subject, reason) keys in one
//! interval, further refusals are counted under one overflow key.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use dsops_state::Command;

/// Distinct keys counted per interval at most.
pub const MAX_KEYS: usize = 1024;
/// Sources remembered per key (the count covers them all).
const SAMPLE_SOURCES: usize = 8;

/// What one key counted during an interval.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Count {
    refusals: u64,
    /// Distinct sources seen, up to a cap (the rest are counted in `more_sources`).
    sources: BTreeSet<String>,
    more_sources: bool,
    /// The full account of the latest refusal, when it says more than the reason.
    latest: Option<String>,
}

/// (audit action, subject, reason).
type Key = (String, String, String);

/// Refusals counted since the last summary.
#[derive(Debug, Default)]
pub struct RefusalTally {
    counts: Mutex<BTreeMap<Key, Count>>,
}

impl RefusalTally {
    /// Counts one refusal: `action` (`tls.refused`, `receipt.refused`, ...), its `subject`
    /// (`handshakes`, `agent agt-…`), why (a short reason: refusals are counted by it), where it
    /// came from, and the full account (`latest`, kept for the latest one only).
    pub fn count(
        &self,
        action: &str,
        subject: &str,
        reason: &str,
        source: Option<&str>,
        latest: Option<&str>,
    ) {
        let mut counts = self.counts.lock().expect("refusal tally lock");
        let mut key = (action.to_owned(), subject.to_owned(), reason.to_owned());
        if !counts.contains_key(&key) && counts.len() >= MAX_KEYS {
            key = (
                "refusals.overflow".to_owned(),
                "refusals".to_owned(),
                format!("more than {MAX_KEYS} kinds of refusal in one interval"),
            );
        }
        let count = counts.entry(key).or_default();
        count.refusals += 1;
        count.latest = latest.map(|l| l.chars().take(512).collect());
        if let Some(source) = source
            && !count.sources.contains(source)
        {
            if count.sources.len() < SAMPLE_SOURCES {
                count.sources.insert(source.to_owned());
            } else {
                count.more_sources = true;
            }
        }
    }

    /// The summaries of the interval that ends now, as audit commands; the tally starts over.
    pub(crate) fn drain(&self, interval: Duration) -> Vec<Command> {
        let counts = std::mem::take(&mut *self.counts.lock().expect("refusal tally lock"));
        counts
            .into_iter()
            .map(|((action, subject, reason), count)| {
                let sources = if count.sources.is_empty() {
                    String::new()
                } else {
                    let list: Vec<&str> = count.sources.iter().map(String::as_str).collect();
                    let more = if count.more_sources { ", and others" } else { "" };
                    format!(" from {}{more}", list.join(", "))
                };
                let latest = count.latest.map(|l| format!(" (latest: {l})")).unwrap_or_default();
                Command::AppendAudit {
                    action,
                    subject,
                    detail: format!(
                        "{} refused in {}s{sources}: {reason}{latest}",
                        count.refusals,
                        interval.as_secs().max(1)
                    ),
                }
            })
            .collect()
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.counts.lock().expect("refusal tally lock").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_sources_make_one_summary_per_reason_and_keys_are_bounded() {
        let tally = RefusalTally::default();
        for i in 0..20_000u32 {
            let address = format!("127.0.{}.{}", i / 256, i % 256);
            tally.count("tls.refused", "handshakes", "no certificate", Some(&address), None);
        }
        let summaries = tally.drain(Duration::from_secs(60));
        assert_eq!(summaries.len(), 1);
        let Command::AppendAudit { detail, .. } = &summaries[0] else { panic!() };
        assert!(detail.starts_with("20000 refused in 60s from 127.0.0.0"), "{detail}");
        assert!(detail.contains("and others"), "{detail}");
        assert!(tally.is_empty());
        for i in 0..(MAX_KEYS + 50) {
            tally.count("receipt.refused", &format!("agent a{i}"), "late", None, Some("run r"));
        }
        let summaries = tally.drain(Duration::from_secs(60));
        assert_eq!(summaries.len(), MAX_KEYS + 1);
        assert!(summaries.iter().any(|c| matches!(c, Command::AppendAudit { action, detail, .. }
            if action == "refusals.overflow" && detail.starts_with("50 refused"))));
    }
}
