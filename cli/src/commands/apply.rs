use dsops_config::config::catalog_files;
use dsops_proto::wire::admin as wire;

use crate::args::{ApplyArgs, Cli, OutputFormat};
use crate::context::require_config;
use crate::failure::Failure;
use crate::output::print_json;
use crate::remote::{Remote, request_id};

/// `dsops apply -f dsops.yaml`: validate locally, store in the cluster, print what changed.
pub async fn run(cli: &Cli, args: &ApplyArgs) -> Result<(), Failure> {
    let remote = Remote::require(cli)?;
    let loaded = require_config(cli)?;
    let path = cli.config_path();
    let config_yaml = std::fs::read_to_string(&path)
        .map_err(|e| Failure::invalid(format!("{}: {e}", path.display())))?;
    let files = match &loaded.config.rotation.data_dir {
        Some(dir) => catalog_files(dir)?,
        None => Default::default(),
    };
    let id = request_id();
    let expected_version = args.expected_version.unwrap_or(0);
    let config_path = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dsops.yaml".into());
    let response = remote
        .call("apply", |mut c| {
            let request = wire::ApplyConfigRequest {
                request_id: id.clone(),
                config_yaml: config_yaml.clone(),
                config_path: config_path.clone(),
                catalog_files: files.clone().into_iter().collect(),
                expected_version,
            };
            async move { c.apply_config(request).await }
        })
        .await?;
    if cli.output == OutputFormat::Json {
        let changes: Vec<_> = response
            .changes
            .iter()
            .map(|c| serde_json::json!({ "action": c.action, "path": c.path }))
            .collect();
        return print_json(
            &serde_json::json!({ "version": response.version, "previous_version": response.previous_version, "changes": changes }),
        );
    }
    out!("stored configuration version {} (was {})", response.version, response.previous_version);
    if response.changes.is_empty() {
        out!("no changes");
    }
    for change in &response.changes {
        let mark = match change.action.as_str() {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        out!("  {mark} {}", change.path);
    }
    Ok(())
}
