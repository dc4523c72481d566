//! `dsops-server init` and `join`: preparing a data directory.

use std::collections::BTreeMap;
use std::time::Duration;

use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::node_join_client::NodeJoinClient;
use openraft::BasicNode;
use rand::RngCore;

use dsops_identity::Credentials;

use super::layout::{DataDir, NodeFile};
use super::server::{NodeOptions, open_raft};
use crate::pki::{Authority, ClusterPki};
use dsops_identity::JoinToken;
use dsops_identity::{API_SERVER_NAME, new_csr, pinned_client_config};
use dsops_state::{Command, NodeRole};

/// What `init` produced.
#[derive(Debug)]
pub struct Initialized {
    /// The first node's id (1).
    pub node_id: u64,
    /// A one-time join token for the next node (valid one hour).
    pub join_token: String,
    /// Where the admin credential bundle was written.
    pub admin_dir: std::path::PathBuf,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    dsops_proto::hex(&buf)
}

/// Creates the data directory readable by its owner only (it holds the cluster's CA keys).
fn create_private_dir(dir: &DataDir) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.root();
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", root.display()))
}

fn refuse_existing(dir: &DataDir) -> Result<(), String> {
    if dir.is_initialized() {
        return Err(format!(
            "{} already holds a node (node.json exists); use `dsops-server run`",
            dir.root().display()
        ));
    }
    Ok(())
}

/// Removes what an init that was interrupted (before it wrote `node.json`) left behind: a raft
/// log already initialized, keys nobody uses. Nothing else in the directory is touched.
fn remove_unfinished_init(dir: &DataDir) -> Result<(), String> {
    for file in [dir.legacy_log_db(), dir.state_db()] {
        match std::fs::remove_file(&file) {
            Ok(()) => {
                tracing::warn!(path = %file.display(), "removed what an interrupted init left")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    for folder in [dir.log_dir(), dir.tls(), dir.admin()] {
        match std::fs::remove_dir_all(&folder) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", folder.display())),
        }
    }
    Ok(())
}

/// Creates a new cluster in `dir`: CAs, the first node's certificate, the admin credentials, a
/// one-node raft membership, and a join token.
pub async fn init(
    dir: &DataDir,
    listen: &str,
    advertise: Option<&str>,
) -> Result<Initialized, String> {
    refuse_existing(dir)?;
    let advertise = advertise.unwrap_or(listen).to_owned();
    let host = super::join_service::reachable_host(&advertise)?;
    create_private_dir(dir)?;
    remove_unfinished_init(dir)?;
    let cluster_id = random_hex(8);
    let (pki, root_key) = ClusterPki::generate(&cluster_id).map_err(|e| e.to_string())?;
    pki.save(&dir.tls()).map_err(|e| e.to_string())?;
    dsops_identity::write_private(&dir.tls().join("root-ca.key"), &root_key)
        .map_err(|e| e.to_string())?;
    let node_id = 1;
    let node_cert = pki.issue_node(node_id, &[host]).map_err(|e| e.to_string())?;
    dir.write_node_cert(&node_cert).map_err(|e| e.to_string())?;
    let admin = pki.issue_operator("admin", 365).map_err(|e| e.to_string())?;
    Credentials { ca_pem: pki.peer.cert_pem.clone(), identity: admin }
        .write(&dir.admin())
        .map_err(|e| e.to_string())?;
    // Bring the one-node cluster up without serving, record the node and a first join token.
    let (raft, state, pki) = open_raft(dir, node_id, &NodeOptions::default()).await?;
    raft.initialize(BTreeMap::from([(node_id, BasicNode { addr: advertise.clone() })]))
        .await
        .map_err(|e| format!("initializing raft: {e}"))?;
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(node_id, "the new node becomes leader")
        .await
        .map_err(|e| e.to_string())?;
    let token = JoinToken::generate(&dsops_identity::fingerprint(
        &pki.peer.cert_der().map_err(|e| e.to_string())?,
    ));
    let control = crate::control::ControlPlane::new(node_id, raft.clone(), state, pki);
    let writes = [
        Command::RegisterNode { node_id, address: advertise.clone(), role: NodeRole::Voter },
        Command::AppendAudit {
            action: "cluster.init".into(),
            subject: format!("cluster {cluster_id}"),
            detail: format!("node 1 at {advertise}"),
        },
        Command::CreateJoinToken {
            token_hash: JoinToken::secret_hash(&token.secret),
            expires_at_ms: dsops_proto::now_ms() + 3_600_000,
        },
        // The bundle written above is the first admin (proposed as itself, so the record says
        // it added itself).
        Command::SetRole {
            operator: "admin".into(),
            grant: dsops_proto::domain::RoleGrant {
                role: dsops_proto::domain::OperatorRole::Admin,
                env: None,
            },
            granted: true,
        },
    ];
    for (i, command) in writes.into_iter().enumerate() {
        let actor = if matches!(command, Command::SetRole { .. }) { "admin" } else { "init" };
        control
            .write(actor, &format!("init-{cluster_id}-{i:08}"), command)
            .await
            .map_err(|e| e.to_string())?;
    }
    raft.shutdown().await.map_err(|e| e.to_string())?;
    // Last, atomically: `node.json` is what makes the directory a node, so an init that was
    // interrupted before this line is started over by the next one.
    dir.write_node(&NodeFile {
        node_id,
        listen: listen.to_owned(),
        advertise: advertise.clone(),
        cluster_id: cluster_id.clone(),
    })
    .map_err(|e| e.to_string())?;
    Ok(Initialized { node_id, join_token: token.encode(), admin_dir: dir.admin() })
}

/// Joins an existing cluster through the node at `peer`: checks the cluster against the token's
/// CA fingerprint, exchanges a CSR for a certificate, and writes the data directory. The node is
/// a learner until it runs and catches up; then the leader promotes it.
pub async fn join(
    dir: &DataDir,
    listen: &str,
    advertise: Option<&str>,
    peer: &str,
    token: &str,
) -> Result<u64, String> {
    refuse_existing(dir)?;
    let token = JoinToken::parse(token)?;
    let advertise = advertise.unwrap_or(listen).to_owned();
    super::join_service::reachable_host(&advertise)?;
    let (csr, key) = new_csr("joining node").map_err(|e| e.to_string())?;
    let tls = pinned_client_config(&token.ca_fingerprint).map_err(|e| e.to_string())?;
    let mut target = peer.to_owned();
    let mut hops = 0;
    let response = loop {
        let channel = dsops_identity::channel(&target, API_SERVER_NAME, tls.clone())
            .map_err(|e| e.to_string())?;
        let mut client = NodeJoinClient::new(channel);
        let request = wire::JoinRequest {
            token_secret: token.secret.clone(),
            csr_pem: csr.clone(),
            address: advertise.clone(),
        };
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), client.join(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::unavailable("no answer within 30 s")));
        match answer {
            Ok(response) => break response.into_inner(),
            Err(status) => match dsops_proto::error::leader_hint(&status) {
                // A follower answered: retry at the leader (the token hash makes it idempotent).
                Some(leader) if leader != target && hops < 5 => {
                    hops += 1;
                    target = leader;
                }
                _ => return Err(format!("join through {target} failed: {}", status.message())),
            },
        }
    };
    let material = |m: Option<wire::CaMaterial>, what: &str| -> Result<Authority, String> {
        let m = m.ok_or_else(|| format!("the cluster sent no {what} CA"))?;
        if m.key_pem.is_empty() {
            // A learner holds the certificate only; it gets the key once it is a voter.
            return Ok(Authority::certificate_only(&m.certificate_pem));
        }
        Authority::from_pem(&m.certificate_pem, &m.key_pem).map_err(|e| e.to_string())
    };
    let peer_ca = material(response.peer_ca, "peer")?;
    let der = peer_ca.cert_der().map_err(|e| e.to_string())?;
    if dsops_identity::fingerprint(&der) != token.ca_fingerprint {
        return Err("the cluster sent a peer CA that does not match the join token".to_owned());
    }
    let pki = ClusterPki {
        cluster_id: response.cluster_id.clone(),
        root_cert_pem: response.root_ca_pem.clone(),
        peer: peer_ca,
        agent: material(response.agent_ca, "agent")?,
        operator_cert_pem: response
            .operator_ca
            .ok_or("the cluster sent no operator CA")?
            .certificate_pem,
        operator: None,
    };
    create_private_dir(dir)?;
    pki.save(&dir.tls()).map_err(|e| e.to_string())?;
    dir.write_node_cert(&dsops_identity::CertifiedKey {
        cert_pem: response.certificate_pem,
        key_pem: key,
    })
    .map_err(|e| e.to_string())?;
    dir.write_node(&NodeFile {
        node_id: response.node_id,
        listen: listen.to_owned(),
        advertise,
        cluster_id: response.cluster_id,
    })
    .map_err(|e| e.to_string())?;
    Ok(response.node_id)
}
