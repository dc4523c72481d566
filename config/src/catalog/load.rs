use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use super::checks;
use super::{Catalog, DocKind, Entry, Layer, SchemaSet, SourceFile};
use crate::document::{Diagnostics, Pos, parse_yaml};

/// What the bundled layer gives every load: its schemas compiled and its documents read and
/// checked, once per process (the bundled catalog is compiled into the binary and never
/// changes), with what that found.
struct Bundled {
    schemas: SchemaSet,
    schema_findings: Diagnostics,
    catalog: Catalog,
    findings: Diagnostics,
}

fn bundled() -> &'static Bundled {
    static BUNDLED: OnceLock<Bundled> = OnceLock::new();
    BUNDLED.get_or_init(|| {
        let layer = Layer::bundled();
        let mut schema_findings = Diagnostics::new();
        let schemas = SchemaSet::compile(&layer, &mut schema_findings);
        let mut findings = schema_findings.clone();
        let mut catalog = Catalog::default();
        add_layer(&mut catalog, &layer, &schemas, &mut findings);
        Bundled { schemas, schema_findings, catalog, findings }
    })
}

pub(super) fn load(layers: &[Layer], diagnostics: &mut Diagnostics) -> Catalog {
    // dsops's own schemas apply to every document: they describe what dsops understands. A
    // layer's own schemas apply, in addition, to that layer's documents.
    let bundled = bundled();
    let (mut catalog, rest) = match layers.split_first() {
        Some((first, rest)) if first.bundled => {
            diagnostics.extend(bundled.findings.clone());
            (bundled.catalog.clone(), rest)
        }
        _ => {
            diagnostics.extend(bundled.schema_findings.clone());
            (Catalog::default(), layers)
        }
    };
    for layer in rest {
        add_layer(&mut catalog, layer, &bundled.schemas, diagnostics);
    }
    checks::check_documents(&mut catalog, diagnostics);
    checks::check_references(&catalog, diagnostics);
    catalog
}

/// Reads one layer's documents into `catalog`, each checked against dsops's schemas and the
/// layer's own.
fn add_layer(
    catalog: &mut Catalog,
    layer: &Layer,
    bundled_schemas: &SchemaSet,
    diagnostics: &mut Diagnostics,
) {
    let own_schemas =
        if layer.bundled { SchemaSet::default() } else { SchemaSet::compile(layer, diagnostics) };
    let mut seen: BTreeMap<(DocKind, String), String> = BTreeMap::new();
    for file in &layer.documents {
        let Some((kind, node)) = read_document(file, diagnostics) else { continue };
        let json = node.to_json();
        let passed_ours = bundled_schemas.check(kind, &node, &json, &file.display, diagnostics);
        let passed_theirs = own_schemas.check(kind, &node, &json, &file.display, diagnostics);
        if !(passed_ours && passed_theirs) {
            continue;
        }
        let key = match kind {
            DocKind::ServiceType => add(
                &mut catalog.service_types,
                file,
                layer,
                node,
                json,
                diagnostics,
                |v: &super::ServiceType| v.metadata.name.clone(),
            ),
            DocKind::ServiceInstance => add(
                &mut catalog.service_instances,
                file,
                layer,
                node,
                json,
                diagnostics,
                super::ServiceInstance::key,
            ),
            DocKind::RotationPolicy => add(
                &mut catalog.rotation_policies,
                file,
                layer,
                node,
                json,
                diagnostics,
                |v: &super::RotationPolicy| v.metadata.name.clone(),
            ),
            DocKind::Principal => add(
                &mut catalog.principals,
                file,
                layer,
                node,
                json,
                diagnostics,
                |v: &super::Principal| v.metadata.name.clone(),
            ),
        };
        let Some(key) = key else { continue };
        if let Some(first) = seen.insert((kind, key.clone()), file.display.clone()) {
            let (pointer, path) = if kind == DocKind::ServiceInstance {
                ("/metadata/id", "metadata.id")
            } else {
                ("/metadata/name", "metadata.name")
            };
            let pos = doc_pos(kind, catalog, &key, pointer).unwrap_or(Pos { line: 1, column: 1 });
            diagnostics.error(
                &file.display,
                pos,
                path,
                format!("duplicate {} {key:?}: also defined in {first}", kind.name()),
            );
        }
    }
}

/// The position of a field of the document just inserted under `key`.
fn doc_pos(kind: DocKind, catalog: &Catalog, key: &str, pointer: &str) -> Option<Pos> {
    match kind {
        DocKind::ServiceType => catalog.service_types.get(key).map(|e| e.pos(pointer)),
        DocKind::ServiceInstance => catalog.service_instances.get(key).map(|e| e.pos(pointer)),
        DocKind::RotationPolicy => catalog.rotation_policies.get(key).map(|e| e.pos(pointer)),
        DocKind::Principal => catalog.principals.get(key).map(|e| e.pos(pointer)),
    }
}

/// Parses a file and checks that its `kind` matches its folder.
fn read_document(
    file: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Option<(DocKind, crate::document::Node)> {
    let node = parse_yaml(&file.text, &file.display, diagnostics)?;
    let folder = file.rel_path.split('/').next().unwrap_or_default();
    let folder_kind = DocKind::from_folder(folder)?;
    let Some(kind_node) = node.get("kind") else {
        diagnostics.error(
            &file.display,
            node.pos,
            "kind",
            format!("missing required field (expected {:?} in {folder}/)", folder_kind.name()),
        );
        return None;
    };
    let declared = kind_node.scalar_text().unwrap_or_default();
    match DocKind::from_name(declared) {
        Some(kind) if kind == folder_kind => Some((kind, node)),
        Some(kind) => {
            diagnostics.error(
                &file.display,
                kind_node.pos,
                "kind",
                format!(
                    "a {declared} document belongs in {}/, but this file is in {folder}/",
                    kind.folder()
                ),
            );
            None
        }
        None => {
            let names = DocKind::ALL.map(DocKind::name);
            let mut message = format!(
                "unknown kind {declared:?}; expected {:?} in {folder}/",
                folder_kind.name()
            );
            if let Some(hint) = crate::document::suggest(declared, names) {
                message = format!("unknown kind {declared:?}; did you mean {hint:?}?");
            }
            diagnostics.error(&file.display, kind_node.pos, "kind", message);
            None
        }
    }
}

/// Converts a schema-valid document to its type and inserts it (overriding earlier layers).
fn add<T: DeserializeOwned>(
    map: &mut BTreeMap<String, Entry<T>>,
    file: &SourceFile,
    layer: &Layer,
    node: crate::document::Node,
    json: serde_json::Value,
    diagnostics: &mut Diagnostics,
    key_of: impl Fn(&T) -> String,
) -> Option<String> {
    let value: T = match serde_json::from_value(json) {
        Ok(value) => value,
        Err(error) => {
            // Only reachable when a layer's own schema is looser than the model.
            diagnostics.error(
                &file.display,
                node.pos,
                "",
                format!(
                    "does not match the {} model: {error}",
                    std::any::type_name::<T>().rsplit("::").next().unwrap_or_default()
                ),
            );
            return None;
        }
    };
    let key = key_of(&value);
    let entry = Entry {
        value,
        file: file.display.clone(),
        layer: layer.label.clone(),
        bundled: layer.bundled,
        node,
    };
    map.insert(key.clone(), entry);
    Some(key)
}
