//! The server side of joining: a node with a valid one-time token gets an id, a certificate and
//! the cluster's CAs, and is added as a learner. The leader promotes it later (see `promote`).

use dsops_proto::ErrorCode;
use dsops_proto::wire::raft as wire;
use dsops_proto::wire::raft::node_join_server::NodeJoin;
use openraft::BasicNode;
use tonic::{Request, Response, Status};

use crate::control::ControlPlane;
use crate::pki::{Role, caller_of};
use dsops_identity::JoinToken;
use dsops_state::{Command, Outcome};

/// Serves `NodeJoin`.
#[derive(Debug, Clone)]
pub struct JoinService {
    control: ControlPlane,
}

impl JoinService {
    /// A join service for `control`.
    pub fn new(control: ControlPlane) -> JoinService {
        JoinService { control }
    }
}

/// The host of an address other nodes can reach: not a wildcard.
pub(crate) fn reachable_host(address: &str) -> Result<String, String> {
    let (host, _) = split_address(address)?;
    if host == "0.0.0.0" || host == "::" {
        return Err(format!(
            "{address} cannot be reached by other nodes; give --advertise HOST:PORT"
        ));
    }
    Ok(host)
}

/// Splits `host:port`, checking both parts.
pub(crate) fn split_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) =
        address.rsplit_once(':').ok_or_else(|| format!("{address:?} is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{address:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(format!("{address:?} is not host:port with a non-zero port"));
    }
    Ok((host.to_owned(), port))
}

#[tonic::async_trait]
impl NodeJoin for JoinService {
    async fn join(
        &self,
        request: Request<wire::JoinRequest>,
    ) -> Result<Response<wire::JoinResponse>, Status> {
        let wire::JoinRequest { token_secret, csr_pem, address } = request.into_inner();
        if token_secret.len() != 64 || !token_secret.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(
                ErrorCode::InvalidArgument.to_status("token_secret: expected 64 hex digits")
            );
        }
        if address.len() > 255 || csr_pem.len() > 16 * 1024 {
            return Err(ErrorCode::InvalidArgument.to_status("address or csr_pem is too long"));
        }
        let host = reachable_host(&address)
            .map_err(|e| ErrorCode::InvalidArgument.to_status(format!("address: {e}")))?;
        let control = &self.control;
        if !control.is_leader() {
            return Err(crate::control::WriteError::NotLeader {
                leader: control.leader().map(|(_, a)| a),
            }
            .to_status());
        }
        // The token first: an unknown, used or expired one is refused here, before anything
        // costs a signature or a raft write (anyone can call this service, and a committed
        // refusal would still move the log). The same joiner retrying after a lost answer
        // gets its first response again: its request id is remembered. The state machine
        // checks the token again when it is consumed (two joins racing with one token).
        let hash = JoinToken::secret_hash(&token_secret.to_ascii_lowercase());
        let request_id = JoinToken::secret_hash(&format!("{hash}\n{csr_pem}\n{address}"));
        let request_id = format!("join-{}", &request_id[..48]);
        let now = dsops_proto::now_ms();
        let refusal = control
            .read_local(|state| {
                if state.dedup.get(&request_id).is_some() {
                    return None;
                }
                match state.join_tokens.get(&hash) {
                    None => Some("unknown join token"),
                    Some(token) if token.used_by.is_some() => {
                        Some("the join token was already used")
                    }
                    Some(token) if token.expires_at_ms <= now => Some("the join token has expired"),
                    Some(_) => None,
                }
            })
            .await;
        if let Some(refusal) = refusal {
            return Err(ErrorCode::PermissionDenied.to_status(refusal));
        }
        // Then everything else that can be wrong with the request, before the token is spent:
        // the CSR and the host must make a certificate (a throw-away one, for node 0).
        control
            .pki()
            .sign_node_csr(&csr_pem, 0, std::slice::from_ref(&host))
            .map_err(|e| ErrorCode::InvalidArgument.to_status(format!("csr_pem: {e}")))?;
        let command = Command::ConsumeJoinToken { token_hash: hash, address: address.clone() };
        let response =
            control.write("join", &request_id, command).await.map_err(|e| e.to_status())?;
        let Outcome::TokenConsumed { node_id } = response.outcome else {
            return Err(ErrorCode::Internal.to_status("unexpected outcome of a join"));
        };
        let pki = control.pki();
        let certificate_pem = pki
            .sign_node_csr(&csr_pem, node_id, &[host])
            .map_err(|e| ErrorCode::InvalidArgument.to_status(e.to_string()))?;
        control
            .raft()
            .add_learner(node_id, BasicNode { addr: address.clone() }, false)
            .await
            .map_err(|e| {
                ErrorCode::Unavailable
                    .to_status(format!("could not add node {node_id} as a learner: {e}"))
            })?;
        tracing::info!(node_id, %address, "node joined as a learner");
        // Certificates only: a learner holds no issuing key. It asks for them once it is a
        // voter (IssuingKeys).
        let certificate = |authority: &crate::pki::Authority| wire::CaMaterial {
            certificate_pem: authority.cert_pem.clone(),
            key_pem: String::new(),
        };
        Ok(Response::new(wire::JoinResponse {
            node_id,
            certificate_pem,
            cluster_id: pki.cluster_id.clone(),
            root_ca_pem: pki.root_cert_pem.clone(),
            peer_ca: Some(certificate(&pki.peer)),
            agent_ca: Some(certificate(&pki.agent)),
            // A learner gets no issuing key; the operator CA's comes with the others once it is
            // a voter.
            operator_ca: Some(wire::CaMaterial {
                certificate_pem: pki.operator_cert_pem.clone(),
                key_pem: String::new(),
            }),
            leader_id: control.node_id(),
        }))
    }

    async fn issuing_keys(
        &self,
        request: Request<wire::IssuingKeysRequest>,
    ) -> Result<Response<wire::IssuingKeysResponse>, Status> {
        let identity = caller_of(
            &request,
            Role::Peer,
            "ask for the issuing CA keys",
            "a node certificate is required",
        )?;
        let node_id = identity
            .name
            .strip_prefix("node-")
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| ErrorCode::PermissionDenied.to_status("not a node certificate"))?;
        let control = &self.control;
        if !control.is_leader() {
            return Err(crate::control::WriteError::NotLeader {
                leader: control.leader().map(|(_, a)| a),
            }
            .to_status());
        }
        let voter =
            control.metrics().membership_config.membership().voter_ids().any(|v| v == node_id);
        let revoked =
            control.read_local(|s| s.is_revoked("peer", &identity.name, identity.issued_ms)).await;
        if !voter || revoked || dsops_proto::now_ms() >= identity.not_after_ms {
            return Err(ErrorCode::PermissionDenied.to_status(format!(
                "node {node_id} is not a voter of this cluster: only voters hold the issuing CA keys"
            )));
        }
        let pki = control.pki();
        if !pki.peer.can_issue() || !pki.agent.can_issue() {
            return Err(
                ErrorCode::Unavailable.to_status("the leader does not hold the issuing keys")
            );
        }
        let material = |authority: &crate::pki::Authority| wire::CaMaterial {
            certificate_pem: authority.cert_pem.clone(),
            key_pem: authority.key_pem.clone(),
        };
        tracing::info!(node_id, "issuing CA keys handed to a voter");
        Ok(Response::new(wire::IssuingKeysResponse {
            peer_ca: Some(material(&pki.peer)),
            agent_ca: Some(material(&pki.agent)),
            operator_ca: pki.operator.as_ref().map(material),
        }))
    }
}
