//! The agent's identity: its id, segment and the Ed25519 key that signs its receipts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::secret::random_bytes;

/// Who the agent is.
#[derive(Clone)]
pub struct AgentIdentity {
    /// Its id.
    pub agent_id: String,
    /// Its segment.
    pub segment: String,
    /// Its receipt-signing key.
    pub signing_key: SigningKey,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("agent_id", &self.agent_id)
            .field("segment", &self.segment)
            .field("public_key", &self.public_key_hex())
            .finish()
    }
}

impl AgentIdentity {
    /// Loads the signing key from `path` (hex, mode 0600), creating it if missing.
    pub fn load_or_create(
        agent_id: &str,
        segment: &str,
        path: &Path,
    ) -> Result<AgentIdentity, String> {
        // Receipts carry the id; it must be one the wire accepts.
        dsops_proto::domain::AgentId::parse(agent_id, "agent_id").map_err(|e| e.to_string())?;
        let signing_key = match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{}: signing key is readable by others; chmod 600 it",
                        path.display()
                    ));
                }
                let bytes = Zeroizing::new(dsops_proto::hex_decode(&text).unwrap_or_default());
                let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    format!("{}: not a signing key (64 hex digits)", path.display())
                })?;
                SigningKey::from_bytes(&seed)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let seed = Zeroizing::new(
                    random_bytes::<32>().map_err(|_| "random source failed".to_owned())?,
                );
                let text = Zeroizing::new(dsops_proto::hex(seed.as_slice()));
                let created = dsops_store::key_file::create_once(path, text.as_bytes())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if !created {
                    // Another process created it meanwhile: use theirs.
                    return AgentIdentity::load_or_create(agent_id, segment, path);
                }
                SigningKey::from_bytes(&seed)
            }
            Err(error) => return Err(format!("{}: {error}", path.display())),
        };
        Ok(AgentIdentity {
            agent_id: agent_id.to_owned(),
            segment: segment.to_owned(),
            signing_key,
        })
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> String {
        dsops_proto::hex(&self.signing_key.verifying_key().to_bytes())
    }
}
