//! Where catalog files come from: the catalog bundled into the binary, a directory on disk, or
//! files received over the API. Each becomes a [`Layer`]; later layers override earlier ones.

use std::collections::BTreeMap;
use std::path::Path;

use include_dir::{Dir, include_dir};

use super::DocKind;
use crate::document::{Diagnostics, Pos};

static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../dsops-data");

/// One catalog file's text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the catalog root, `/`-separated: `service-types/postgresql.yaml`.
    pub rel_path: String,
    /// How to name the file in messages.
    pub display: String,
    /// Its contents.
    pub text: String,
}

/// A set of catalog files and the schemas that came with them.
#[derive(Debug, Clone)]
pub struct Layer {
    /// `bundled` or the directory's path.
    pub label: String,
    /// Whether this is the catalog compiled into dsops (whose schemas apply to every layer).
    pub bundled: bool,
    /// YAML documents inside the four kind folders.
    pub documents: Vec<SourceFile>,
    /// JSON Schemas from `schemas/`, by file name.
    pub schemas: BTreeMap<String, SourceFile>,
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

impl Layer {
    /// Builds a layer from relative paths and texts, sorting files into documents and schemas.
    /// YAML files outside the four kind folders are reported as warnings and skipped.
    pub fn from_files(label: &str, files: Vec<SourceFile>, diagnostics: &mut Diagnostics) -> Layer {
        let mut layer = Layer {
            label: label.to_owned(),
            bundled: false,
            documents: Vec::new(),
            schemas: BTreeMap::new(),
        };
        for file in files {
            let (top, rest) = file.rel_path.split_once('/').unwrap_or(("", file.rel_path.as_str()));
            if top == "schemas" && rest.ends_with(".schema.json") && !rest.contains('/') {
                layer.schemas.insert(rest.to_owned(), file);
            } else if is_yaml(&file.rel_path) {
                if DocKind::from_folder(top).is_some() {
                    layer.documents.push(file);
                } else {
                    diagnostics.warning(
                        &file.display,
                        Pos::default(),
                        "",
                        "ignored: catalog documents belong in service-types/, service-instances/, rotation-policies/ or principals/",
                    );
                }
            }
        }
        layer.documents.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        layer
    }

    /// The catalog compiled into dsops (the repository's `dsops-data/`), gathered once per
    /// process.
    pub fn bundled() -> Layer {
        static LAYER: std::sync::OnceLock<Layer> = std::sync::OnceLock::new();
        LAYER
            .get_or_init(|| {
                let mut files = Vec::new();
                collect_bundled(&BUNDLED, &mut files);
                let mut layer = Layer::from_files("bundled", files, &mut Diagnostics::new());
                layer.bundled = true;
                layer
            })
            .clone()
    }

    /// Reads a catalog directory recursively. A missing or unreadable directory or file is an
    /// error; symbolic links to directories are not followed (no cycles).
    pub fn from_dir(dir: &Path, diagnostics: &mut Diagnostics) -> Option<Layer> {
        let label = dir.display().to_string();
        if !dir.is_dir() {
            diagnostics.error(
                &label,
                Pos::default(),
                "",
                "catalog directory does not exist or is not a directory",
            );
            return None;
        }
        let mut files = Vec::new();
        walk(dir, "", &mut files, diagnostics);
        Some(Layer::from_files(&label, files, diagnostics))
    }
}

fn collect_bundled(dir: &Dir<'static>, files: &mut Vec<SourceFile>) {
    for file in dir.files() {
        let rel_path = file.path().to_string_lossy().replace('\\', "/");
        if let Some(text) = file.contents_utf8() {
            files.push(SourceFile {
                display: format!("<bundled>/{rel_path}"),
                rel_path,
                text: text.to_owned(),
            });
        }
    }
    for sub in dir.dirs() {
        collect_bundled(sub, files);
    }
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<SourceFile>, diagnostics: &mut Diagnostics) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            diagnostics.error(
                &dir.display().to_string(),
                Pos::default(),
                "",
                format!("cannot read directory: {error}"),
            );
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        let Ok(file_type) = entry.file_type() else { continue };
        if file_type.is_dir() {
            walk(&path, &rel, files, diagnostics);
        } else if (file_type.is_file() || (file_type.is_symlink() && path.is_file()))
            && (is_yaml(&name) || name.ends_with(".schema.json"))
        {
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push(SourceFile {
                    rel_path: rel,
                    display: path.display().to_string(),
                    text,
                }),
                Err(error) => diagnostics.error(
                    &path.display().to_string(),
                    Pos::default(),
                    "",
                    format!("cannot read file: {error}"),
                ),
            }
        }
    }
}
