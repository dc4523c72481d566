//! Runs the real `dsops` binary from the workspace root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (where `examples/` lives).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ has a parent").to_path_buf()
}

/// Runs `dsops` with `args` in `dir`.
pub fn dsops_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsops"))
        .args(args)
        .current_dir(dir)
        .env_remove("DSOPS_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run dsops")
}

/// Runs `dsops` with `args` in the workspace root.
pub fn dsops(args: &[&str]) -> Output {
    dsops_in(&root(), args)
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
