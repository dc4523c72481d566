//! Every service, rpc, message, enum, field and enum value in `proto/` carries a comment: the
//! `.proto` files are the contract other teams read.

use std::path::Path;

fn proto_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read proto dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            proto_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "proto") {
            found.push(path);
        }
    }
}

/// Whether a line declares something that needs a comment.
fn is_declaration(line: &str) -> bool {
    let line = line.trim();
    if line.starts_with("//") || line.is_empty() || line == "}" {
        return false;
    }
    let keyword = ["message ", "service ", "enum ", "rpc ", "oneof "];
    if keyword.iter().any(|k| line.starts_with(k)) {
        // `oneof` groups are explained by their fields.
        return !line.starts_with("oneof ");
    }
    // A field or enum value: `type name = N;` or `NAME = N;`.
    line.ends_with(';')
        && line.contains(" = ")
        && !line.starts_with("syntax")
        && !line.starts_with("package")
        && !line.starts_with("import")
        && !line.starts_with("option")
}

#[test]
fn every_declaration_is_commented() {
    let mut files = Vec::new();
    proto_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"), &mut files);
    assert!(files.len() >= 4, "found {files:?}");
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read proto");
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if !is_declaration(line) {
                continue;
            }
            // Messages with no body (`message X {}`) still need a comment above.
            let previous =
                lines[..index].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim());
            let commented = previous.is_some_and(|p| p.starts_with("//")) || line.contains("//");
            if !commented {
                missing.push(format!("{}:{}: {}", file.display(), index + 1, line.trim()));
            }
        }
    }
    assert!(missing.is_empty(), "uncommented declarations:\n{}", missing.join("\n"));
}
