//! The invariant the crash and chaos suites probe: a stored value works against the real peer.

use std::future::Future;

use dsops_agent::store::{Fields, Label, SecretStore};

/// The store's current value of `entry` works, else its pending one (mid-run), from one snapshot
/// of the entry. `works` tries one version and says what it tried when it fails. When neither
/// works but the entry changed meanwhile (a step moved on between the read and the tries), it
/// looks again: only a failure on an unchanged entry is a broken invariant.
pub async fn current_or_pending_works<F, Fut>(
    store: &dyn SecretStore,
    entry: &str,
    mut works: F,
) -> Result<(), String>
where
    F: FnMut(Label, Fields) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..5 {
        let snapshot = store.read_labels(entry).map_err(|e| e.to_string())?;
        let mut tried = Vec::new();
        for label in [Label::Current, Label::Pending] {
            let Some((_, fields)) = snapshot.get(&label) else { continue };
            match works(label, fields.clone()).await {
                Ok(()) => return Ok(()),
                Err(what) => tried.push(format!("{label}: {what}")),
            }
        }
        last = format!("no stored value of {entry} works (tried {tried:?})");
        if store.read_labels(entry).map_err(|e| e.to_string())? == snapshot {
            return Err(last);
        }
    }
    Err(format!("{last}; the entry kept changing"))
}
