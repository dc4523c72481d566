//! The fuzz targets' functions (`fuzz/src/lib.rs`, included here) on every input kept in the
//! repository: the seeds and corpus (`fuzz/corpus/<target>/`) and the inputs that once crashed a
//! target (`fuzz/regressions/<target>/`). A panic is a regression. `scripts/fuzz.sh` is what
//! finds new inputs; this keeps the ones found.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failure is the report.

#[allow(dead_code, missing_docs, clippy::all)]
#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

fn inputs(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"));
    files.sort();
    files
}

#[test]
fn every_kept_input_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut counted = Vec::new();
    for (name, target) in targets::TARGETS {
        let mut files = inputs(&root.join("corpus").join(name));
        files.extend(inputs(&root.join("regressions").join(name)));
        assert!(!files.is_empty(), "fuzz target {name} has no seed in fuzz/corpus/{name}");
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "fuzz target {name} panicked on {}", file.display());
        }
        counted.push(format!("{name}: {}", files.len()));
    }
    eprintln!("fuzz inputs replayed: {}", counted.join(", "));
}
