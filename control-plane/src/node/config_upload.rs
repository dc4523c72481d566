//! Writing a configuration to the log: in one `store_config` entry when it is small, in parts
//! of at most [`CONFIG_PART_BYTES`] when it is not ([`dsops_state::config_staging`]), so that
//! no entry outgrows what replicates within a heartbeat.

use std::collections::BTreeMap;

use dsops_config::config::{CatalogFiles, load_with};
use dsops_proto::ErrorCode;
use dsops_proto::domain::ApplyConfig;
use dsops_state::{CONFIG_PART_BYTES, Command, ConfigPayload, Outcome, Response, split_payload};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::control::{ControlPlane, WriteError};

/// Validates a configuration to be applied (with the release's catalog and the enforced
/// policies) and returns it with its fingerprints, one per item and catalog file. Runs off the
/// async workers and one at a time per node (with the loads into the configuration cache): a
/// 100,000-secret configuration takes seconds of CPU and hundreds of MB.
pub(super) async fn validate(
    control: &ControlPlane,
    apply: ApplyConfig,
) -> Result<(ApplyConfig, BTreeMap<String, String>), Status> {
    let loading = control.config_loading().await;
    let checked = tokio::task::spawn_blocking(move || {
        let _loading = loading;
        let loaded = load_with(
            &apply.config_yaml,
            &apply.config_path,
            CatalogFiles::Given(&apply.catalog_files),
        )
        .and_then(|loaded| dsops_config::config::enforce::enforced(&loaded).map(|()| loaded));
        match loaded {
            Ok(loaded) => {
                let mut fingerprints = loaded.fingerprints;
                for (path, text) in &apply.catalog_files {
                    let hash: String = dsops_proto::hex(&Sha256::digest(text.as_bytes()));
                    fingerprints.insert(format!("catalog/{path}"), hash);
                }
                Ok((apply, fingerprints))
            }
            Err(diagnostics) => {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                Err(ErrorCode::InvalidArgument
                    .to_status(format!("the configuration is invalid:\n{}", lines.join("\n"))))
            }
        }
    });
    checked.await.map_err(|e| ErrorCode::Internal.to_status(format!("validating: {e}")))?
}

/// Proposes `command` (a `store_config`) as `actor`; the response is the store's. A retry is
/// answered with the change list read back from the stored version (the dedup table keeps none).
pub(super) async fn write_config(
    control: &ControlPlane,
    actor: &str,
    request_id: &str,
    command: Command,
) -> Result<Response, WriteError> {
    let mut response = propose_config(control, actor, request_id, command).await?;
    let duplicate = response.duplicate;
    if let Outcome::ConfigStored { version, changes, .. } = &mut response.outcome
        && duplicate
        && changes.is_empty()
    {
        let version = *version;
        *changes = control
            .read_local(|s| {
                s.configs.iter().find(|c| c.version == version).map(|c| c.changes.clone())
            })
            .await
            .unwrap_or_default();
    }
    Ok(response)
}

async fn propose_config(
    control: &ControlPlane,
    actor: &str,
    request_id: &str,
    command: Command,
) -> Result<Response, WriteError> {
    if command.approx_size() <= CONFIG_PART_BYTES {
        return control.write(actor, request_id, command).await;
    }
    let payload = match ConfigPayload::from_command(command) {
        Ok(payload) => payload,
        Err(other) => return control.write(actor, request_id, *other).await,
    };
    let Some((parts, sha256)) = split_payload(&payload) else {
        return Err(WriteError::Rejected {
            code: ErrorCode::InvalidArgument,
            message: format!(
                "the configuration with its fingerprints is larger than {} bytes",
                dsops_state::MAX_STAGED_CONFIG_BYTES
            ),
        });
    };
    drop(payload);
    let count = parts.len() as u32;
    for (index, text) in parts.into_iter().enumerate() {
        let command =
            Command::StageConfigPart { upload: request_id.to_owned(), index: index as u32, text };
        control.write(actor, &format!("{request_id}/part-{index}"), command).await?;
    }
    let store = Command::StoreStagedConfig { upload: request_id.to_owned(), parts: count, sha256 };
    control.write(actor, request_id, store).await
}
