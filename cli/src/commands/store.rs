//! `dsops store put|list`: the local stores, read and written directly (no control plane).

use std::io::Read;
use std::path::Path;

use dsops_agent::SecretValue;
use dsops_agent::from_config::open_store;
use dsops_proto::domain::StoreRef;
use serde::Serialize;

use crate::args::{Cli, OutputFormat, StoreCommand};
use crate::context::require_config;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// The directory relative store paths in the configuration are resolved against.
pub fn base_dir(cli: &Cli) -> std::path::PathBuf {
    let path = cli.config_path();
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
}

#[derive(Debug, Serialize)]
struct VersionRow {
    entry: String,
    version: u64,
    labels: Vec<String>,
    created_at_ms: u64,
    run_id: String,
    fingerprints: std::collections::BTreeMap<String, String>,
}

/// `dsops store ...`.
pub fn run(cli: &Cli, command: &StoreCommand) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    match command {
        StoreCommand::Put { reference } => {
            let reference =
                StoreRef::parse(reference).map_err(|e| Failure::invalid(e.to_string()))?;
            // No field: the whole value (what `from.store` without `#field` reads).
            let field = reference.value_field().to_owned();
            let store = open_store(&loaded, &reference.store, &cli.state_dir(), &base_dir(cli))
                .map_err(|e| Failure::invalid(format!("{e:#}")))?;
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!(
                    "reading the value for {reference} from standard input (end with Enter; it is echoed: prefer a pipe)"
                );
            }
            // Zeroized when dropped, like the value itself.
            let mut text = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("reading standard input: {e}")))?;
            let trimmed =
                text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            let value = SecretValue::new(trimmed.to_owned());
            if value.is_empty() {
                return Err(Failure::invalid(
                    "the value read from standard input is empty; nothing was stored",
                ));
            }
            let info = store
                .put(&reference.path, &field, &value)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
            let fingerprint =
                info.fingerprints.get(&field).map(|f| f.to_string()).unwrap_or_default();
            if cli.output == OutputFormat::Json {
                return print_json(
                    &serde_json::json!({ "reference": reference.to_string(), "version": info.version, "fingerprint": fingerprint }),
                );
            }
            out!(
                "stored {reference} as version {} (fingerprint {})",
                info.version,
                &fingerprint[..16.min(fingerprint.len())]
            );
            Ok(())
        }
        StoreCommand::List { store } => {
            let opened = open_store(&loaded, store, &cli.state_dir(), &base_dir(cli))
                .map_err(|e| Failure::invalid(format!("{e:#}")))?;
            let entries = opened.list().map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
            let rows: Vec<VersionRow> = entries
                .iter()
                .flat_map(|(entry, versions)| {
                    versions.iter().map(move |v| VersionRow {
                        entry: entry.clone(),
                        version: v.version,
                        labels: v.labels.iter().map(ToString::to_string).collect(),
                        created_at_ms: v.created_at_ms,
                        run_id: v.run_id.clone(),
                        fingerprints: v
                            .fingerprints
                            .iter()
                            .map(|(k, f)| (k.clone(), f.to_string()))
                            .collect(),
                    })
                })
                .collect();
            if cli.output == OutputFormat::Json {
                return print_json(&rows);
            }
            let mut t = table(&["ENTRY", "VERSION", "LABELS", "CREATED", "RUN", "FIELDS"]);
            for r in &rows {
                let created =
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(r.created_at_ms as i64)
                        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_default();
                let fields: Vec<String> = r
                    .fingerprints
                    .iter()
                    .map(|(k, f)| format!("{k}={}", &f[..12.min(f.len())]))
                    .collect();
                t.add_row(vec![
                    r.entry.clone(),
                    r.version.to_string(),
                    r.labels.join(","),
                    created,
                    r.run_id.clone(),
                    fields.join(" "),
                ]);
            }
            print_table(&t);
            Ok(())
        }
    }
}
