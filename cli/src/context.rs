//! Loading what commands work on: the configuration (when there is one) and the catalog.

use dsops_config::catalog::{Catalog, Layer};
use dsops_config::config::{Loaded, load_file};
use dsops_config::document::Diagnostics;

use crate::args::Cli;
use crate::failure::Failure;

/// The catalog, and the configuration it came with if one was found.
#[derive(Debug)]
pub struct Context {
    /// The catalog: bundled, plus the configuration's `rotation.dataDir`.
    pub catalog: Catalog,
    /// The configuration, if `-f` named one or `dsops.yaml` exists here.
    pub loaded: Option<Loaded>,
}

/// Loads the configuration (required) and its catalog.
pub fn require_config(cli: &Cli) -> Result<Loaded, Failure> {
    let loaded = load_file(&cli.config_path())?;
    crate::output::print_warnings(&loaded.warnings);
    Ok(loaded)
}

/// Loads the catalog; with a configuration when one was named or `dsops.yaml` exists, else the
/// bundled catalog alone.
pub fn catalog(cli: &Cli) -> Result<Context, Failure> {
    let path = cli.config_path();
    if cli.file.is_some() || path.exists() {
        let loaded = require_config(cli)?;
        return Ok(Context { catalog: loaded.catalog.clone(), loaded: Some(loaded) });
    }
    let mut diagnostics = Diagnostics::new();
    let catalog = Catalog::load(&[Layer::bundled()], &mut diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics.sorted().into());
    }
    Ok(Context { catalog, loaded: None })
}
