use serde::Serialize;

use crate::args::{Cli, OutputFormat};
use crate::context::require_config;
use crate::failure::Failure;
use crate::output::print_json;

/// What a valid configuration holds.
#[derive(Debug, Serialize)]
struct Summary {
    ok: bool,
    file: String,
    environments: usize,
    secrets: usize,
    rotated: usize,
    services: usize,
    secret_stores: usize,
    catalog: CatalogSummary,
    diagnostics: Vec<dsops_config::document::Diagnostic>,
}

#[derive(Debug, Serialize)]
struct CatalogSummary {
    service_types: usize,
    service_instances: usize,
    rotation_policies: usize,
    principals: usize,
}

/// `dsops validate`.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    let loaded = require_config(cli)?;
    let config = &loaded.config;
    let catalog = &loaded.catalog;
    let summary = Summary {
        ok: true,
        file: config.file.clone(),
        environments: config.envs.len(),
        secrets: config.envs.values().map(|e| e.secrets.len()).sum(),
        rotated: config
            .envs
            .values()
            .flat_map(|e| e.secrets.values())
            .filter(|s| s.rotation.is_some())
            .count(),
        services: config.services.len(),
        secret_stores: config.secret_stores.len(),
        catalog: CatalogSummary {
            service_types: catalog.service_types.len(),
            service_instances: catalog.service_instances.len(),
            rotation_policies: catalog.rotation_policies.len(),
            principals: catalog.principals.len(),
        },
        diagnostics: loaded.warnings.clone(),
    };
    if cli.output == OutputFormat::Json {
        return print_json(&summary);
    }
    out!(
        "{}: valid: {} environment(s), {} secret(s) ({} rotated), {} service(s), {} secret store(s)",
        summary.file,
        summary.environments,
        summary.secrets,
        summary.rotated,
        summary.services,
        summary.secret_stores
    );
    out!(
        "catalog: {} service types, {} instances, {} rotation policies, {} principals",
        summary.catalog.service_types,
        summary.catalog.service_instances,
        summary.catalog.rotation_policies,
        summary.catalog.principals
    );
    Ok(())
}
