//! Creating a key file once, whole or not at all: a process killed while creating it leaves no
//! file (or a stray temporary), never an empty or half-written key that would lock the store
//! or the agent out for good.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::secret::random_bytes;

/// Writes `contents` to `path` (mode 0600) only if `path` does not exist: written and synced
/// under a temporary name, then hard-linked into place, which fails if another process created
/// the file first. Returns whether this call created it.
pub fn create_once(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let suffix = random_bytes::<8>().map(|b| dsops_proto::hex(&b)).unwrap_or_default();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = parent.join(format!(".{name}.{suffix}.tmp"));
    let written = (|| {
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            fs::File::open(parent)?.sync_all()?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_once_with_owner_only_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keys/store.key");
        assert!(create_once(&path, b"first").expect("created"));
        assert!(!create_once(&path, b"second").expect("exists"));
        assert_eq!(fs::read(&path).expect("read"), b"first");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["store.key"]);
    }
}
