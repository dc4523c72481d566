//! Writing key material: atomically (write, fsync, rename), private keys with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a private key (mode 0600).
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    write_atomic(path, contents.as_bytes(), 0o600)
}

/// Writes a certificate or other public file (mode 0644).
pub fn write_public(path: &Path, contents: &str) -> std::io::Result<()> {
    write_atomic(path, contents.as_bytes(), 0o644)
}
