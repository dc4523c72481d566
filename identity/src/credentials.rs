//! The operator credential bundle the CLI reads to reach a cluster.

use std::path::Path;

use crate::CertifiedKey;

/// An operator credential bundle: what the CLI needs to reach a cluster.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The CA that issued the nodes' certificates (the peer CA), PEM.
    pub ca_pem: String,
    /// The operator's certificate and key.
    pub identity: CertifiedKey,
}

impl Credentials {
    /// Reads `ca.pem`, `operator.pem` and `operator.key` from a directory.
    pub fn read(dir: &Path) -> Result<Credentials, String> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(Credentials {
            ca_pem: read("ca.pem")?,
            identity: CertifiedKey {
                cert_pem: read("operator.pem")?,
                key_pem: read("operator.key")?,
            },
        })
    }

    /// Writes the bundle, every file mode 0600 (it is one credential).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        crate::write_private(&dir.join("ca.pem"), &self.ca_pem)?;
        crate::write_private(&dir.join("operator.pem"), &self.identity.cert_pem)?;
        crate::write_private(&dir.join("operator.key"), &self.identity.key_pem)
    }
}
