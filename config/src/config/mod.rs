//! `dsops.yaml`: the configuration users write.
//!
//! [`load_file`] is the one entry point: it reads the file, parses it into a positioned tree,
//! reads the tree into a [`Config`] (structure, references, cron, durations), loads the catalog
//! (bundled plus `rotation.dataDir`), and resolves every variable against it. Every problem of
//! every stage is collected; nothing is returned as valid unless there are no errors.

mod approvals;
pub mod calendar;
pub mod enforce;
mod fields_table;
mod instances;
mod model;
pub mod notify;
mod parse;
pub mod promotion;
pub mod renewal;
mod resolve;
mod settings;
mod strategy_rules;

use std::path::Path;

pub use fields_table::{
    ADAPTER_TYPES, FieldKind, FieldSpec, OVERLAP_TYPES, RUNNABLE_STORE_TYPES, SERVICE_TYPE_ALIASES,
    STORE_TYPE_ALIASES, STORE_TYPES, service_fields, service_type_is, store_fields,
    store_type_name, store_type_runs,
};
pub use model::{
    ApprovalRule, Config, EnvConfig, Notification, RotationConfig, RotationDefaults, SecretConfig,
    SecretRotation, ServiceConfig, StoreConfig,
};
pub use parse::parse_config;
pub use resolve::{Origin, ResolvedSecret, resolve};
pub use strategy_rules::CONNECTION_STRING;

use std::collections::BTreeMap;

use crate::catalog::{Catalog, Layer, SourceFile};
use crate::document::{Diagnostic, Diagnostics, Pos, parse_yaml};

/// A configuration that validated, with its catalog and any warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The catalog it was checked against.
    pub catalog: Catalog,
    /// Warnings (never errors).
    pub warnings: Vec<Diagnostic>,
    /// A content hash per item (see [`Loaded::fingerprints`]).
    pub fingerprints: BTreeMap<String, String>,
}

impl Loaded {
    /// Every variable resolved (cannot fail: the configuration validated).
    pub fn resolved(&self) -> Vec<ResolvedSecret<'_>> {
        resolve(&self.config, &self.catalog, &mut Diagnostics::new())
    }

    /// One variable resolved, by environment and name, without resolving the others (`None`
    /// when the configuration has no such variable).
    pub fn resolve_secret(&self, env: &str, key: &str) -> Option<ResolvedSecret<'_>> {
        resolve::resolve_named(&self.config, &self.catalog, env, key)
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

/// Where the extra catalog of `rotation.dataDir` comes from.
#[derive(Debug, Clone)]
pub enum CatalogFiles<'a> {
    /// Read the directory the configuration names (relative to `base_dir`).
    FromDisk {
        /// The directory the configuration file is in.
        base_dir: &'a Path,
    },
    /// Files sent along with the configuration (by `dsops apply`), by relative path.
    Given(&'a BTreeMap<String, String>),
}

/// Validates configuration text; `base_dir` resolves a relative `rotation.dataDir`.
pub fn load_str(text: &str, file: &str, base_dir: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let loaded = load_with(text, file, CatalogFiles::FromDisk { base_dir })?;
    enforce::enforced(&loaded)?;
    Ok(loaded)
}

/// Validates configuration text with its extra catalog from `catalog`. The policies of
/// `rotation.enforce` are not judged here (see [`enforce::enforced`]): a stored configuration
/// loads the same on every node at any time, while a schedule's gaps depend on the year ahead.
pub fn load_with(
    text: &str,
    file: &str,
    catalog: CatalogFiles<'_>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diagnostics = Diagnostics::new();
    let Some(root) = parse_yaml(text, file, &mut diagnostics) else {
        return Err(diagnostics.sorted());
    };
    let base_dir = match catalog {
        CatalogFiles::FromDisk { base_dir } => base_dir,
        CatalogFiles::Given(_) => Path::new("."),
    };
    let Some(mut config) = parse_config(&root, file, base_dir, &mut diagnostics) else {
        return Err(diagnostics.sorted());
    };
    let mut layers = vec![Layer::bundled()];
    match (catalog, &config.rotation.data_dir) {
        (CatalogFiles::Given(files), _) if !files.is_empty() => {
            let files = files
                .iter()
                .map(|(rel_path, text)| SourceFile {
                    rel_path: rel_path.clone(),
                    display: format!("<dataDir>/{rel_path}"),
                    text: text.clone(),
                })
                .collect();
            layers.push(Layer::from_files("dataDir", files, &mut diagnostics));
        }
        (CatalogFiles::Given(_), _) | (_, None) => {}
        (CatalogFiles::FromDisk { .. }, Some(dir)) => {
            // A missing directory is reported at the `dataDir` line; problems inside it
            // (unreadable files, stray YAML) are reported by the walk itself.
            match dir.is_dir().then(|| Layer::from_dir(dir, &mut diagnostics)).flatten() {
                Some(layer) => layers.push(layer),
                None => {
                    let pos = root.at_pointer("/rotation/dataDir").pos;
                    let message = format!(
                        "catalog directory {} does not exist or is not a directory",
                        dir.display()
                    );
                    diagnostics.error(file, pos, "rotation.dataDir", message);
                }
            }
        }
    }
    let catalog = Catalog::load(&layers, &mut diagnostics);
    instances::add_catalog_services(&root, &mut config, &catalog, &mut diagnostics);
    resolve(&config, &catalog, &mut diagnostics);
    notify::warn_unresolved(&root, file, &config, &catalog, &mut diagnostics);
    enforce::check_names(&root, &config, &catalog, &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics.sorted());
    }
    Ok(Loaded {
        config,
        catalog,
        warnings: diagnostics.sorted(),
        fingerprints: fingerprints(&root),
    })
}

/// A content hash per configuration item, from which the stored versions' change lists are
/// computed: `secretStores.<name>`, `services.<name>`, `rotation`, `envs.<env>.<VAR>`.
fn fingerprints(root: &crate::document::Node) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let hash = |node: &crate::document::Node| -> String {
        // serde_json's map is ordered by key, so the text is canonical.
        let text = serde_json::to_string(&node.to_json()).unwrap_or_default();
        dsops_proto::hex(&Sha256::digest(text.as_bytes()))
    };
    let mut items = BTreeMap::new();
    let entries = |node: Option<&crate::document::Node>| match node.map(|n| &n.value) {
        Some(crate::document::Value::Map(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    for section in ["secretStores", "services"] {
        for (key, value) in entries(root.get(section)) {
            items.insert(
                format!("{section}.{}", key.scalar_text().unwrap_or_default()),
                hash(&value),
            );
        }
    }
    if let Some(rotation) = root.get("rotation") {
        items.insert("rotation".to_owned(), hash(rotation));
    }
    for (env, vars) in entries(root.get("envs")) {
        for (var, value) in entries(Some(&vars)) {
            items.insert(
                format!(
                    "envs.{}.{}",
                    env.scalar_text().unwrap_or_default(),
                    var.scalar_text().unwrap_or_default()
                ),
                hash(&value),
            );
        }
    }
    items
}

/// The files of a catalog directory as `dsops apply` sends them: relative path → text.
pub fn catalog_files(dir: &Path) -> Result<BTreeMap<String, String>, Vec<Diagnostic>> {
    let mut diagnostics = Diagnostics::new();
    let layer = Layer::from_dir(dir, &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics.sorted());
    }
    let layer = layer.expect("no errors means the directory was read");
    Ok(layer
        .documents
        .into_iter()
        .chain(layer.schemas.into_values())
        .map(|f| (f.rel_path, f.text))
        .collect())
}

#[cfg(test)]
mod enforce_tests;
#[cfg(test)]
mod governance_tests;
#[cfg(test)]
mod promotion_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vision_tests;
