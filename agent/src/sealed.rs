//! The agent's own state at rest: one JSON document sealed with AES-256-GCM under a key kept in
//! a separate file (32 random bytes, hex, mode 0600), written atomically (write, fsync, rename,
//! directory fsync). It holds the agent's private keys, so the file is 0600 too and a key file
//! readable by others is refused.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::envelope::{self, Unsealed};

const MAGIC: &[u8; 8] = b"DSOPSAS1";

/// Creates `dir` if missing and makes it 0700.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: cannot make it private (0700): {e}", dir.display()))
}

/// A sealed file and its key.
pub struct SealedFile {
    path: PathBuf,
    key: LessSafeKey,
}

impl std::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SealedFile {
    /// The sealed file at `path`, with its key in `key_file` (created if missing). The
    /// directories holding both are made readable by their owner only (0700), whatever they
    /// were: they hold the agent's keys.
    pub fn open(path: &Path, key_file: &Path) -> Result<SealedFile, String> {
        for file in [path, key_file] {
            let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            private_dir(dir)?;
        }
        let key = crate::store::load_or_create_key(key_file).map_err(|e| e.to_string())?;
        let key = UnboundKey::new(&AES_256_GCM, key.as_slice())
            .map_err(|_| format!("{}: unusable key", key_file.display()))?;
        Ok(SealedFile { path: path.to_owned(), key: LessSafeKey::new(key) })
    }

    fn aad(&self) -> Vec<u8> {
        self.path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default()
    }

    /// Reads and decrypts the document; `None` if the file does not exist.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, String> {
        let path = &self.path;
        let data = match fs::read(path) {
            Ok(data) => Zeroizing::new(data),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("{}: {error}", path.display())),
        };
        let mut data = data;
        let plain =
            envelope::open(&self.key, MAGIC, &self.aad(), &mut data).map_err(|e| match e {
                Unsealed::NotOurs => format!("{}: not a dsops agent state file", path.display()),
                Unsealed::Altered => format!(
                    "{}: cannot decrypt: wrong key file, or the file was altered",
                    path.display()
                ),
            })?;
        serde_json::from_slice(plain)
            .map(Some)
            .map_err(|e| format!("{}: bad contents: {e}", path.display()))
    }

    /// Encrypts and writes the document atomically.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), String> {
        let path = &self.path;
        let error = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut plain = Zeroizing::new(serde_json::to_vec(value).map_err(|e| error(&e))?);
        let sealed =
            envelope::seal(&self.key, MAGIC, &self.aad(), &mut plain).map_err(|e| error(&e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| error(&e))?;
        let temp = path.with_extension("tmp");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| error(&e))?;
        file.write_all(&sealed).map_err(|e| error(&e))?;
        file.sync_all().map_err(|e| error(&e))?;
        drop(file);
        fs::rename(&temp, path).map_err(|e| error(&e))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| error(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn round_trip_is_encrypted_private_and_bound_to_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.state");
        let sealed = SealedFile::open(&path, &dir.path().join("agent.key")).unwrap();
        assert_eq!(sealed.load::<Vec<String>>().unwrap(), None);
        sealed.save(&vec!["private-key-material".to_owned()]).unwrap();
        assert_eq!(sealed.load::<Vec<String>>().unwrap().unwrap(), ["private-key-material"]);
        let bytes = fs::read(&path).unwrap();
        assert!(!bytes.windows(20).any(|w| w == b"private-key-material"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let other = SealedFile::open(&path, &dir.path().join("other.key")).unwrap();
        assert!(other.load::<Vec<String>>().unwrap_err().contains("cannot decrypt"));
    }

    #[test]
    fn the_data_directory_is_forced_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("agent");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        SealedFile::open(&data.join("agent.state"), &data.join("agent.key")).unwrap();
        assert_eq!(fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
