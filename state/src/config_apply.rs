//! Applying configuration commands: storing a validated `dsops.yaml` (with its catalog files)
//! as a new version, and the change list against the previous one.

use std::collections::{BTreeMap, BTreeSet};

use dsops_proto::ErrorCode;

use super::{ApplyContext, CONFIG_HISTORY, ConfigChange, Outcome, Request, State, StoredConfig};

/// What a `StoreConfig` command carries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigInput<'a> {
    pub config_yaml: &'a str,
    pub config_path: &'a str,
    pub catalog_files: &'a BTreeMap<String, String>,
    pub fingerprints: &'a BTreeMap<String, String>,
    pub expected_version: Option<u64>,
    pub history_bytes: Option<u64>,
}

/// Stores a configuration as the next version, unless another was stored since the proposer
/// looked (`expected_version`), and lets the runs awaiting approval know.
pub(crate) fn store_config(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    input: ConfigInput<'_>,
) -> Outcome {
    let now = request.proposed_at_ms;
    let ConfigInput {
        config_yaml,
        config_path,
        catalog_files,
        fingerprints,
        expected_version,
        history_bytes,
    } = input;
    let current = state.config_version();
    match expected_version {
        Some(expected) if expected != current => Outcome::rejected(
            ErrorCode::Conflict,
            format!(
                "the stored configuration is version {current}, not {expected}; review the changes and apply again"
            ),
        ),
        _ => {
            let changes = diff(state.current_config().map(|c| &c.fingerprints), fingerprints);
            let version = current + 1;
            state.configs.push(StoredConfig {
                version,
                config_yaml: config_yaml.to_owned(),
                config_path: config_path.to_owned(),
                catalog_files: catalog_files.clone(),
                fingerprints: fingerprints.clone(),
                changes: changes.clone(),
                applied_at_ms: now,
                applied_by: request.actor.clone(),
                index: ctx.index,
            });
            trim_history(&mut state.configs, history_bytes);
            let detail = format!("version {version}, {} change(s)", changes.len());
            state.audit.append(
                ctx.index,
                now,
                &request.actor,
                "config.stored",
                config_path,
                &detail,
            );
            super::approval_apply::configuration_changed(state, request, ctx);
            Outcome::ConfigStored { version, previous_version: current, changes }
        }
    }
}

/// Drops the oldest versions beyond [`CONFIG_HISTORY`] and, when the command sets one, beyond
/// its byte bound; the newest version is always kept.
fn trim_history(configs: &mut Vec<StoredConfig>, history_bytes: Option<u64>) {
    let mut excess = configs.len().saturating_sub(CONFIG_HISTORY);
    if let Some(limit) = history_bytes {
        let mut kept: u64 = configs[excess..].iter().map(StoredConfig::bytes).sum();
        while excess + 1 < configs.len() && kept > limit {
            kept -= configs[excess].bytes();
            excess += 1;
        }
    }
    configs.drain(..excess);
}

/// Changes between two fingerprint maps, sorted by path.
fn diff(
    previous: Option<&BTreeMap<String, String>>,
    next: &BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let empty = BTreeMap::new();
    let previous = previous.unwrap_or(&empty);
    let paths: BTreeSet<&String> = previous.keys().chain(next.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| {
            let action = match (previous.get(path), next.get(path)) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(a), Some(b)) if a != b => "modified",
                _ => return None,
            };
            Some(ConfigChange { action: action.to_owned(), path: path.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(version: u64, yaml_bytes: usize) -> StoredConfig {
        StoredConfig {
            version,
            config_yaml: "x".repeat(yaml_bytes),
            config_path: "dsops.yaml".into(),
            catalog_files: BTreeMap::from([("c.yaml".to_owned(), "yy".to_owned())]),
            fingerprints: BTreeMap::from([("envs.a.K".to_owned(), "abcd".to_owned())]),
            changes: Vec::new(),
            applied_at_ms: 0,
            applied_by: "admin".into(),
            index: version,
        }
    }

    fn versions(configs: &[StoredConfig]) -> Vec<u64> {
        configs.iter().map(|c| c.version).collect()
    }

    #[test]
    fn a_stored_version_counts_its_documents_fingerprints_and_changes() {
        // 100 + "c.yaml" + "yy" + "envs.a.K" + "abcd"
        assert_eq!(version(1, 100).bytes(), 100 + 6 + 2 + 8 + 4);
        let mut changed = version(1, 100);
        changed.changes.push(ConfigChange { action: "added".into(), path: "envs.a.K".into() });
        assert_eq!(changed.bytes(), 120 + 5 + 8);
    }

    #[test]
    fn history_is_bounded_by_count_and_by_bytes_and_keeps_the_newest() {
        // Without a byte bound (commands of log format 1): the count bound only.
        let mut configs: Vec<_> =
            (1..=CONFIG_HISTORY as u64 + 2).map(|v| version(v, 1000)).collect();
        trim_history(&mut configs, None);
        assert_eq!(configs.len(), CONFIG_HISTORY);
        assert_eq!(configs[0].version, 3);

        // A byte bound drops the oldest until the rest fits: 4 versions of 1,020 bytes in 3,100.
        let mut configs: Vec<_> = (1..=4).map(|v| version(v, 1000)).collect();
        trim_history(&mut configs, Some(3_100));
        assert_eq!(versions(&configs), [2, 3, 4]);
        trim_history(&mut configs, Some(3 * 1_020));
        assert_eq!(versions(&configs), [2, 3, 4], "exactly at the bound is within it");

        // The newest version stays even when it alone is over the bound.
        let mut configs: Vec<_> = (1..=3).map(|v| version(v, 1000)).collect();
        trim_history(&mut configs, Some(10));
        assert_eq!(versions(&configs), [3]);

        // Both bounds at once: the count bound first, then bytes.
        let mut configs: Vec<_> =
            (1..=CONFIG_HISTORY as u64 + 1).map(|v| version(v, 1000)).collect();
        trim_history(&mut configs, Some(10 * 1_020));
        assert_eq!(
            versions(&configs),
            (CONFIG_HISTORY as u64 - 8..=CONFIG_HISTORY as u64 + 1).collect::<Vec<_>>()
        );
    }
}
