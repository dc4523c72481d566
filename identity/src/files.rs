//! Writing key material: atomically (write, fsync, rename), private keys with mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // `<name>.tmp` next to the target: unique per target (`node.pem` and `node.key` differ).
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` applies only when the file is created: set it explicitly for a leftover file.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
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

/// Creates a directory (and its parents) that only its owner may enter (mode 0700).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}
