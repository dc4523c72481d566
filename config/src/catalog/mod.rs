//! The service catalog: what can be rotated and how, in the dsops-data layout
//! (`shared/catalog-format.md`).
//!
//! ```text
//!  Layer::bundled() ─┐
//!  Layer::from_dir() ├─▶ parse YAML ─▶ kind/folder ─▶ JSON Schemas ─▶ typed ─▶ per-document
//!        ...         ┘     checks (durations, cron, regex) ─▶ merge by key ─▶ cross-file checks
//! ```
//!
//! Later layers override documents of earlier layers with the same key (a user's
//! `rotation.dataDir` can replace a bundled service type); two documents with the same key in
//! one layer are an error naming both files.

mod checks;
mod kind;
mod layer;
mod load;
mod model;
mod policy;
mod schema;

use std::collections::BTreeMap;

pub use checks::CHARSETS;
pub use kind::DocKind;
pub use layer::{Layer, SourceFile};
pub use model::{
    Capability, Constraints, CredentialKind, HttpApi, HttpCall, InstanceCredential, MaxActive,
    ServiceInstance, ServiceType, Strategy,
};
pub use policy::{Principal, Requirements, RotationPolicy};
pub use schema::SchemaSet;

use crate::document::{Diagnostic, Diagnostics, Node, Pos};
use crate::time::MaintenanceWindow;

/// A catalog document with where it came from.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// The typed document.
    pub value: T,
    /// The file, as named in messages.
    pub file: String,
    /// The layer it came from (`bundled` or a directory).
    pub layer: String,
    /// Whether that layer is the bundled catalog.
    pub bundled: bool,
    /// The parsed tree, for positions of fields.
    pub node: Node,
}

impl<T> Entry<T> {
    /// The position of a field given as a JSON pointer (`/metadata/type`).
    pub fn pos(&self, pointer: &str) -> Pos {
        self.node.at_pointer(pointer).pos
    }
}

/// A loaded, validated catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// ServiceTypes by name.
    pub service_types: BTreeMap<String, Entry<ServiceType>>,
    /// ServiceInstances by `type/id`.
    pub service_instances: BTreeMap<String, Entry<ServiceInstance>>,
    /// RotationPolicies by name.
    pub rotation_policies: BTreeMap<String, Entry<RotationPolicy>>,
    /// Principals by name.
    pub principals: BTreeMap<String, Entry<Principal>>,
    /// Each policy's maintenance windows, parsed.
    pub windows: BTreeMap<String, Vec<MaintenanceWindow>>,
}

impl Catalog {
    /// Loads and validates layers in order (later ones override earlier ones). Every problem is
    /// reported to `diagnostics`; documents with errors are left out of the result.
    pub fn load(layers: &[Layer], diagnostics: &mut Diagnostics) -> Catalog {
        load::load(layers, diagnostics)
    }

    /// The bundled catalog alone; its errors (a broken build) are returned, not hidden.
    pub fn bundled() -> Result<Catalog, Vec<Diagnostic>> {
        let mut diagnostics = Diagnostics::new();
        let catalog = Catalog::load(&[Layer::bundled()], &mut diagnostics);
        if diagnostics.has_errors() { Err(diagnostics.sorted()) } else { Ok(catalog) }
    }

    /// A service type by name.
    pub fn service_type(&self, name: &str) -> Option<&ServiceType> {
        self.service_types.get(name).map(|e| &e.value)
    }

    /// A rotation policy by name.
    pub fn policy(&self, name: &str) -> Option<&RotationPolicy> {
        self.rotation_policies.get(name).map(|e| &e.value)
    }

    /// A policy's maintenance windows (empty when it has none).
    pub fn policy_windows(&self, name: &str) -> &[MaintenanceWindow] {
        self.windows.get(name).map(Vec::as_slice).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
