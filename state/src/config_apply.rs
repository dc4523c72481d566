//! Applying configuration commands: storing a validated `dsops.yaml` (with its catalog files)
//! as a new version, and the change list against the previous one.

use std::collections::{BTreeMap, BTreeSet};

use dsops_proto::ErrorCode;

use super::{ApplyContext, CONFIG_HISTORY, ConfigChange, Outcome, Request, State, StoredConfig};

/// What a `StoreConfig` command carries.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConfigInput<'a> {
    pub config_yaml: &'a str,
    pub config_path: &'a str,
    pub catalog_files: &'a BTreeMap<String, String>,
    pub fingerprints: &'a BTreeMap<String, String>,
    pub expected_version: Option<u64>,
}

/// Stores a configuration as the next version, unless another was stored since the proposer
/// looked (`expected_version`).
pub(super) fn store_config(
    state: &mut State,
    request: &Request,
    ctx: ApplyContext,
    input: ConfigInput<'_>,
) -> Outcome {
    let now = request.proposed_at_ms;
    let ConfigInput { config_yaml, config_path, catalog_files, fingerprints, expected_version } =
        input;
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
            if state.configs.len() > CONFIG_HISTORY {
                state.configs.remove(0);
            }
            let detail = format!("version {version}, {} change(s)", changes.len());
            state.audit.append(
                ctx.index,
                now,
                &request.actor,
                "config.stored",
                config_path,
                &detail,
            );
            Outcome::ConfigStored { version, previous_version: current, changes }
        }
    }
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
