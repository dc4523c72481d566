use dsops_config::catalog::{Catalog, Layer};
use dsops_config::document::Diagnostics;

use crate::args::{CatalogCommand, Cli, OutputFormat};
use crate::failure::Failure;
use crate::output::{print_json, print_warnings};

/// `dsops catalog validate DIR`.
pub fn run(cli: &Cli, command: &CatalogCommand) -> Result<(), Failure> {
    let CatalogCommand::Validate { dir } = command;
    let mut diagnostics = Diagnostics::new();
    let Some(layer) = Layer::from_dir(dir, &mut diagnostics) else {
        return Err(diagnostics.sorted().into());
    };
    let documents = layer.documents.len();
    let catalog = Catalog::load(&[Layer::bundled(), layer], &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics.sorted().into());
    }
    let warnings = diagnostics.sorted();
    let counts = [
        catalog.service_types.values().filter(|e| !e.bundled).count(),
        catalog.service_instances.values().filter(|e| !e.bundled).count(),
        catalog.rotation_policies.values().filter(|e| !e.bundled).count(),
        catalog.principals.values().filter(|e| !e.bundled).count(),
    ];
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "ok": true,
            "directory": dir.display().to_string(),
            "documents": documents,
            "service_types": counts[0],
            "service_instances": counts[1],
            "rotation_policies": counts[2],
            "principals": counts[3],
            "diagnostics": warnings,
        }));
    }
    print_warnings(&warnings);
    out!(
        "{}: valid: {documents} document(s): {} service types, {} instances, {} rotation policies, {} principals",
        dir.display(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    Ok(())
}
