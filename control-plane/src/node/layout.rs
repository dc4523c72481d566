//! What a node keeps in its data directory.
//!
//! ```text
//! DATA_DIR/
//!   node.json          node id, addresses, cluster id
//!   raft-log/          the raft log, vote, committed index (segment files)
//!   state.redb         state-machine snapshots
//!   tls/               root-ca.pem, {peer,agent,operator}-ca.{pem,key}, node.{pem,key}, cluster-id
//!   admin/             ca.pem, operator.pem, operator.key (written by `init` only)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use dsops_identity::CertifiedKey;

/// The paths of a node's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// `node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// This node's raft id.
    pub node_id: u64,
    /// Where it listens, `host:port`.
    pub listen: String,
    /// Where others reach it, `host:port`.
    pub advertise: String,
    /// The cluster it belongs to.
    pub cluster_id: String,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_path_buf() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `node.json`.
    pub fn node_file(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// `tls/`.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }

    /// `admin/`.
    pub fn admin(&self) -> PathBuf {
        self.root.join("admin")
    }

    /// `raft-log/`: the raft log's segment files.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("raft-log")
    }

    /// `raft-log.redb`: where releases before the segment files kept the log (moved into
    /// [`DataDir::log_dir`] when a node opens it).
    pub fn legacy_log_db(&self) -> PathBuf {
        self.root.join("raft-log.redb")
    }

    /// `state.redb`.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.redb")
    }

    /// Whether the directory already holds a node.
    pub fn is_initialized(&self) -> bool {
        self.node_file().exists()
    }

    /// Reads `node.json`.
    pub fn read_node(&self) -> Result<NodeFile, String> {
        let path = self.node_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!("{}: {e} (run `dsops-server init` or `join` first)", path.display())
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: not a node file: {e}", path.display()))
    }

    /// Writes `node.json`.
    pub fn write_node(&self, node: &NodeFile) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(node).expect("NodeFile serializes");
        dsops_identity::write_public(&self.node_file(), &text)
    }

    /// Reads the node's certificate and key.
    pub fn read_node_cert(&self) -> Result<CertifiedKey, String> {
        let read = |name: &str| {
            let path = self.tls().join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(CertifiedKey { cert_pem: read("node.pem")?, key_pem: read("node.key")? })
    }

    /// Writes the node's certificate and key (key mode 0600).
    pub fn write_node_cert(&self, cert: &CertifiedKey) -> std::io::Result<()> {
        dsops_identity::write_public(&self.tls().join("node.pem"), &cert.cert_pem)?;
        dsops_identity::write_private(&self.tls().join("node.key"), &cert.key_pem)
    }
}
