//! JSON Schema enforcement with errors mapped back to lines and field paths.

use std::collections::BTreeMap;

use jsonschema::error::ValidationErrorKind;
use serde_json::Value as Json;

use super::{DocKind, Layer};
use crate::document::{Diagnostics, Node, Pos, Value, join, suggest, unescape_pointer_token};

/// A compiled schema and the raw JSON it came from (to look up allowed property names).
#[derive(Debug)]
struct Compiled {
    display: String,
    raw: Json,
    validator: jsonschema::Validator,
}

/// The schemas of one layer, by kind.
#[derive(Debug, Default)]
pub struct SchemaSet {
    schemas: BTreeMap<DocKind, Compiled>,
}

impl SchemaSet {
    /// Compiles the schemas a layer ships. A schema that is not JSON or not a valid schema is an
    /// error; a kind without a schema is simply not checked by this set.
    pub fn compile(layer: &Layer, diagnostics: &mut Diagnostics) -> SchemaSet {
        let mut set = SchemaSet::default();
        for kind in DocKind::ALL {
            let Some(file) = layer.schemas.get(kind.schema_file()) else { continue };
            let raw: Json = match serde_json::from_str(&file.text) {
                Ok(raw) => raw,
                Err(error) => {
                    let pos = Pos { line: error.line(), column: error.column() };
                    diagnostics.error(&file.display, pos, "", format!("not valid JSON: {error}"));
                    continue;
                }
            };
            match jsonschema::validator_for(&raw) {
                Ok(validator) => {
                    set.schemas
                        .insert(kind, Compiled { display: file.display.clone(), raw, validator });
                }
                Err(error) => diagnostics.error(
                    &file.display,
                    Pos::default(),
                    "",
                    format!("not a valid JSON Schema: {error}"),
                ),
            }
        }
        set
    }

    /// Whether this set has a schema for the kind.
    pub fn covers(&self, kind: DocKind) -> bool {
        self.schemas.contains_key(&kind)
    }

    /// Validates one document; reports every violation. Returns whether it passed.
    pub fn check(
        &self,
        kind: DocKind,
        doc: &Node,
        json: &Json,
        file: &str,
        diagnostics: &mut Diagnostics,
    ) -> bool {
        let Some(compiled) = self.schemas.get(&kind) else { return true };
        let mut ok = true;
        for error in compiled.validator.iter_errors(json) {
            ok = false;
            let pointer = error.instance_path().as_str().to_owned();
            let node = doc.at_pointer(&pointer);
            let path = pointer_to_path(&pointer);
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    let allowed = allowed_properties(&compiled.raw, error.schema_path().as_str());
                    for name in unexpected {
                        let key_pos = key_position(node, name).unwrap_or(node.pos);
                        let mut message = format!("unknown field {name:?}");
                        if let Some(hint) = suggest(name, allowed.iter().map(String::as_str)) {
                            message.push_str(&format!("; did you mean {hint:?}?"));
                        } else if !allowed.is_empty() {
                            message.push_str(&format!("; expected one of: {}", allowed.join(", ")));
                        }
                        diagnostics.error(file, key_pos, &join(&path, name), message);
                    }
                }
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    diagnostics.error(file, node.pos, &join(&path, name), "missing required field");
                }
                ValidationErrorKind::Enum { options } => {
                    let choices: Vec<&str> = options
                        .as_array()
                        .map(|a| a.iter().filter_map(Json::as_str).collect())
                        .unwrap_or_default();
                    let found = node.scalar_text().unwrap_or_default();
                    let mut message = format!("{found:?} is not one of: {}", choices.join(", "));
                    if let Some(hint) = suggest(found, choices.iter().copied()) {
                        message.push_str(&format!("; did you mean {hint:?}?"));
                    }
                    diagnostics.error(file, node.pos, &path, message);
                }
                _ => {
                    // A schema node's `description` says what was expected in words.
                    let expected = schema_node(&compiled.raw, error.schema_path().as_str(), true)
                        .and_then(|n| n.get("description"))
                        .and_then(Json::as_str);
                    let message = match (error.kind(), expected) {
                        (
                            ValidationErrorKind::OneOfNotValid { .. }
                            | ValidationErrorKind::AnyOf { .. },
                            Some(expected),
                        ) => format!("{} is not valid: expected {expected}", error.instance()),
                        (_, Some(expected)) => format!("{error}: expected {expected}"),
                        (_, None) => format!("{error} (schema {})", short(&compiled.display)),
                    };
                    diagnostics.error(file, node.pos, &path, message);
                }
            }
        }
        ok
    }
}

fn short(display: &str) -> &str {
    display.rsplit('/').next().unwrap_or(display)
}

fn key_position(node: &Node, name: &str) -> Option<Pos> {
    match &node.value {
        Value::Map(entries) => {
            entries.iter().find(|(k, _)| k.scalar_text() == Some(name)).map(|(k, _)| k.pos)
        }
        _ => None,
    }
}

/// `/spec/credentialKinds/0/name` → `spec.credentialKinds[0].name`.
pub(crate) fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for raw in pointer.split('/').skip(1) {
        let token = unescape_pointer_token(raw);
        if token.chars().all(|c| c.is_ascii_digit()) && !token.is_empty() {
            path.push_str(&format!("[{token}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&token);
        }
    }
    path
}

/// The property names allowed where an `additionalProperties` error was raised, by walking the
/// schema along the error's schema path (following local `$ref`s).
fn allowed_properties(schema: &Json, schema_path: &str) -> Vec<String> {
    let Some(parent) = schema_path.strip_suffix("/additionalProperties") else { return Vec::new() };
    schema_node(schema, parent, false)
        .and_then(|node| node.get("properties"))
        .and_then(Json::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schema node at an error's schema path, following local `$ref`s. With `parent`, the
/// keyword that failed (the last segment, e.g. `pattern`) is dropped first.
fn schema_node<'s>(schema: &'s Json, schema_path: &str, parent: bool) -> Option<&'s Json> {
    let mut segments: Vec<&str> = schema_path.split('/').skip(1).collect();
    if parent {
        segments.pop();
    }
    let mut node = schema;
    for raw in segments {
        let token = unescape_pointer_token(raw);
        if token == "$ref" {
            let target =
                node.get("$ref").and_then(Json::as_str).and_then(|r| r.strip_prefix('#'))?;
            node = schema.pointer(target)?;
            continue;
        }
        node = match node {
            Json::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => node.get(&token)?,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths() {
        assert_eq!(pointer_to_path("/spec/credentialKinds/0/name"), "spec.credentialKinds[0].name");
        assert_eq!(pointer_to_path(""), "");
    }
}
