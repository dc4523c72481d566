//! `dsops.yaml`: the configuration users write.
//!
//! [`load_file`] is the one entry point: it reads the file, parses it into a positioned tree,
//! reads the tree into a [`Config`] (structure, references, cron, durations), loads the catalog
//! (bundled plus `rotation.dataDir`), and resolves every variable against it. Every problem of
//! every stage is collected; nothing is returned as valid unless there are no errors.

mod fields_table;
mod model;
mod parse;
mod resolve;
mod settings;
mod strategy_rules;

use std::path::Path;

pub use fields_table::{FieldKind, FieldSpec, STORE_TYPES, service_fields, store_fields};
pub use model::{
    Config, EnvConfig, Notification, RotationConfig, RotationDefaults, SecretConfig,
    SecretRotation, ServiceConfig, StoreConfig,
};
pub use parse::parse_config;
pub use resolve::{Origin, ResolvedSecret, resolve};

use crate::catalog::{Catalog, Layer};
use crate::source::{Diagnostic, Diagnostics, Pos, parse_yaml};

/// A configuration that validated, with its catalog and any warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The catalog it was checked against.
    pub catalog: Catalog,
    /// Warnings (never errors).
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    /// Every variable resolved (cannot fail: the configuration validated).
    pub fn resolved(&self) -> Vec<ResolvedSecret<'_>> {
        resolve(&self.config, &self.catalog, &mut Diagnostics::new())
    }
}

/// Reads and validates a configuration file. On failure, every finding (errors and warnings),
/// sorted by file and line.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        let mut diagnostics = Diagnostics::new();
        diagnostics.error(
            &display,
            Pos::default(),
            "",
            format!("cannot read configuration: {error}"),
        );
        diagnostics.sorted()
    })?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    load_str(&text, &display, base)
}

/// Validates configuration text; `base_dir` resolves a relative `rotation.dataDir`.
pub fn load_str(text: &str, file: &str, base_dir: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Diagnostics::new();
    let Some(root) = parse_yaml(text, file, &mut diagnostics) else {
        return Err(diagnostics.sorted());
    };
    let Some(config) = parse_config(&root, file, base_dir, &mut diagnostics) else {
        return Err(diagnostics.sorted());
    };
    let mut layers = vec![Layer::bundled()];
    if let Some(dir) = &config.rotation.data_dir {
        // A missing directory is reported at the `dataDir` line; problems inside it (unreadable
        // files, stray YAML) are reported by the walk itself.
        match dir.is_dir().then(|| Layer::from_dir(dir, &mut diagnostics)).flatten() {
            Some(layer) => layers.push(layer),
            None => {
                let pos = root.at_pointer("/rotation/dataDir").pos;
                diagnostics.error(
                    file,
                    pos,
                    "rotation.dataDir",
                    format!(
                        "catalog directory {} does not exist or is not a directory",
                        dir.display()
                    ),
                );
            }
        }
    }
    let catalog = Catalog::load(&layers, &mut diagnostics);
    resolve(&config, &catalog, &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics.sorted());
    }
    Ok(Loaded { config, catalog, warnings: diagnostics.sorted() })
}

#[cfg(test)]
mod tests;
