//! The `dsops-agent` process: enrolment and its local state, and running the session.
//!
//! Its data directory holds `agent.state` (the agent id, segment, control-plane addresses, TLS
//! key and certificate, receipt-signing key and CAs, sealed with AES-256-GCM, mode 0600) and
//! `agent.key` (the sealing key, mode 0600), plus the file stores its configuration names.
//!
//! ```text
//!  dsops-agent enroll --server HOST:PORT --token DSA1.… --data-dir DIR
//!      token's CA fingerprint pins the server ─▶ Enroll{CSR, receipt key} ─▶ certificate
//!  dsops-agent run --data-dir DIR --config dsops.yaml
//!      stores and services of its segment ─▶ session with the leader (agent/src/session.rs)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::{AgentConfig, AgentPolicy};
use crate::executor::Executor;
use crate::hook::HookSpec;
use crate::identity::AgentIdentity;
use crate::sealed::SealedFile;
use crate::session::{Link, SessionOptions, SessionState};
use anyhow::{Context, anyhow, bail};
use dsops_config::config::Loaded;
use dsops_identity::JoinToken;
use dsops_identity::{API_SERVER_NAME, CertifiedKey, client_config, new_csr};
use dsops_proto::domain::Capabilities;
use dsops_proto::wire::agent as wire;
use dsops_proto::wire::agent::agent_service_client::AgentServiceClient;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::transport::Channel;
use zeroize::Zeroizing;

/// The agent's enrolled identity, as sealed in `agent.state`.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnrolledState {
    /// Its id (the subject of its certificate).
    pub agent_id: String,
    /// Its segment.
    pub segment: String,
    /// Control-plane API addresses.
    pub servers: Vec<String>,
    /// The TLS private key, PEM.
    pub key_pem: String,
    /// The TLS certificate, PEM.
    pub cert_pem: String,
    /// When the certificate was issued and when it expires, ms since the epoch.
    pub cert_issued_ms: u64,
    /// When the certificate expires, ms since the epoch.
    pub cert_not_after_ms: u64,
    /// The CA that signs control-plane certificates: the only one the agent trusts.
    pub server_ca_pem: String,
    /// The receipt-signing key (Ed25519 seed), hex.
    pub signing_seed: String,
    /// The key of a renewal CSR waiting for its certificate.
    #[serde(default)]
    pub pending_key_pem: Option<String>,
}

impl std::fmt::Debug for EnrolledState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolledState")
            .field("agent_id", &self.agent_id)
            .field("segment", &self.segment)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

impl Drop for EnrolledState {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key_pem.zeroize();
        self.signing_seed.zeroize();
        if let Some(key) = &mut self.pending_key_pem {
            key.zeroize();
        }
    }
}

/// The sealed state file of the agent in `dir`.
pub fn state_file(dir: &Path) -> anyhow::Result<SealedFile> {
    SealedFile::open(&dir.join("agent.state"), &dir.join("agent.key")).map_err(|e| anyhow!(e))
}

/// Enrols a new agent with `token` at `server` and seals its state in `dir`.
pub async fn enroll(
    dir: &Path,
    server: &str,
    token: &str,
    hostname: &str,
) -> anyhow::Result<EnrolledState> {
    let sealed = state_file(dir)?;
    if sealed.load::<EnrolledState>().map_err(|e| anyhow!(e))?.is_some() {
        bail!(
            "{} already holds an enrolled agent; use another --data-dir, or revoke it and remove the directory",
            dir.display()
        );
    }
    let token = JoinToken::parse_agent(token).map_err(|e| anyhow!(e))?;
    let (csr_pem, key_pem) = new_csr("dsops-agent").context("creating the TLS key")?;
    let key_pem = Zeroizing::new(key_pem);
    let seed = Zeroizing::new(
        crate::secret::random_bytes::<32>().map_err(|_| anyhow!("random source failed"))?,
    );
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let request = wire::EnrollRequest {
        token: token.encode_agent(),
        csr_pem,
        signing_public_key: signing.verifying_key().as_bytes().to_vec(),
        hostname: hostname.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    // The server is trusted only if its chain holds the CA the token names.
    let tls = dsops_identity::pinned_client_config(&token.ca_fingerprint)?;
    let mut address = server.to_owned();
    let response = loop {
        let channel = dsops_identity::channel(&address, API_SERVER_NAME, tls.clone())?;
        match AgentServiceClient::new(channel).enroll(request.clone()).await {
            Ok(response) => break response.into_inner(),
            Err(status) => match dsops_proto::error::leader_hint(&status) {
                Some(leader) if leader != address => address = leader,
                _ => return Err(anyhow!("enrolment refused by {address}: {}", status.message())),
            },
        }
    };
    let not_after = response
        .not_after
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| anyhow!("the control plane sent no certificate expiry"))?;
    let mut servers = vec![server.to_owned()];
    if address != server {
        servers.push(address);
    }
    let state = EnrolledState {
        agent_id: response.agent_id,
        segment: response.segment,
        servers,
        key_pem: key_pem.to_string(),
        cert_pem: response.certificate_pem,
        cert_issued_ms: dsops_proto::unix_ms(SystemTime::now()),
        cert_not_after_ms: dsops_proto::unix_ms(not_after),
        server_ca_pem: response.server_ca_certificate_pem,
        signing_seed: dsops_proto::hex(seed.as_slice()),
        pending_key_pem: None,
    };
    sealed.save(&state).map_err(|e| anyhow!(e))?;
    Ok(state)
}

/// The session's transport: certificates from the sealed state, renewed before they expire.
pub struct AgentLink {
    sealed: SealedFile,
    state: Mutex<EnrolledState>,
}

impl std::fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentLink").finish_non_exhaustive()
    }
}

impl AgentLink {
    /// Loads the enrolled state from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<AgentLink> {
        let sealed = state_file(dir)?;
        let state = sealed.load::<EnrolledState>().map_err(|e| anyhow!(e))?.ok_or_else(|| {
            anyhow!("{} holds no enrolled agent: run dsops-agent enroll first", dir.display())
        })?;
        Ok(AgentLink { sealed, state: Mutex::new(state) })
    }

    /// A copy of the state.
    pub fn state(&self) -> EnrolledState {
        self.state.lock().expect("agent state lock").clone()
    }
}

impl Link for AgentLink {
    fn channel(&self, address: &str) -> Result<Channel, String> {
        let state = self.state.lock().expect("agent state lock");
        let identity =
            CertifiedKey { cert_pem: state.cert_pem.clone(), key_pem: state.key_pem.clone() };
        let tls =
            client_config(&state.server_ca_pem, Some(&identity)).map_err(|e| e.to_string())?;
        dsops_identity::channel(address, API_SERVER_NAME, tls).map_err(|e| e.to_string())
    }

    fn renewal(&self) -> Option<String> {
        let mut state = self.state.lock().expect("agent state lock");
        // Renew once two thirds of the certificate's life are gone.
        let life = state.cert_not_after_ms.saturating_sub(state.cert_issued_ms);
        let due = state.cert_issued_ms + life / 3 * 2;
        if dsops_proto::unix_ms(SystemTime::now()) < due {
            return None;
        }
        let (csr, key) = new_csr("dsops-agent").ok()?;
        state.pending_key_pem = Some(key);
        Some(csr)
    }

    fn renewed(&self, certificate_pem: &str, not_after: SystemTime) -> Result<(), String> {
        let mut state = self.state.lock().expect("agent state lock");
        let key = state.pending_key_pem.take().ok_or("no renewal was asked for")?;
        let mut next = state.clone();
        next.key_pem = key;
        next.cert_pem = certificate_pem.to_owned();
        next.cert_issued_ms = dsops_proto::unix_ms(SystemTime::now());
        next.cert_not_after_ms = dsops_proto::unix_ms(not_after);
        self.sealed.save(&next)?;
        *state = next;
        Ok(())
    }
}

/// The agent's local configuration from a dsops.yaml: the stores and services of its segment.
/// `base_dir` resolves relative paths; `data_dir` holds the default file-store locations.
pub fn local_config(
    loaded: &Loaded,
    segment: &str,
    data_dir: &Path,
    base_dir: &Path,
) -> anyhow::Result<(AgentConfig, Capabilities)> {
    let mut config = crate::from_config::agent_config(loaded, data_dir, base_dir)?;
    let in_segment = |s: &Option<String>| s.as_deref().unwrap_or("default") == segment;
    let services = &loaded.config.services;
    let stores = &loaded.config.secret_stores;
    config.services.retain(|name, _| services.get(name).is_some_and(|s| in_segment(&s.segment)));
    config.hooks.retain(|name, _| services.get(name).is_some_and(|s| in_segment(&s.segment)));
    config.stores.retain(|name, _| stores.get(name).is_some_and(|s| in_segment(&s.segment)));
    let kept = config.stores.keys().cloned().collect::<std::collections::BTreeSet<_>>();
    config.secrets.retain(|(store, _, _), _| kept.contains(store));
    let mut adapters: Vec<String> =
        config.services.values().map(|s| s.service_type.clone()).collect();
    for hook in config.hooks.values() {
        adapters.push(match hook {
            HookSpec::Script(_) => "script".to_owned(),
            HookSpec::Webhook(_) => "webhook".to_owned(),
        });
    }
    adapters.sort();
    adapters.dedup();
    let capabilities = Capabilities {
        adapters,
        stores: config.stores.keys().cloned().collect(),
        services: config.services.keys().chain(config.hooks.keys()).cloned().collect(),
    };
    Ok((config, capabilities))
}

/// A running agent.
#[derive(Debug)]
pub struct RunningAgent {
    /// Where its session stands.
    pub state: watch::Receiver<SessionState>,
    /// Its id.
    pub agent_id: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningAgent {
    /// Stops the session and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, as if the process died: jobs in progress are dropped.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Options of [`start`].
#[derive(Debug, Clone)]
pub struct AgentRun {
    /// The data directory (sealed state, default file stores).
    pub data_dir: PathBuf,
    /// Extra control-plane addresses besides the enrolled ones.
    pub servers: Vec<String>,
    /// First and longest reconnect delay.
    pub backoff: (Duration, Duration),
    /// What the agent's owner allows it to do.
    pub policy: AgentPolicy,
}

/// Starts the agent enrolled in `run.data_dir` with its configuration from `loaded`.
pub fn start(
    run: &AgentRun,
    loaded: &Loaded,
    base_dir: &Path,
    tune: Option<&dyn Fn(&mut AgentConfig)>,
) -> anyhow::Result<RunningAgent> {
    let link = AgentLink::load(&run.data_dir)?;
    let enrolled = link.state();
    let (mut config, mut capabilities) =
        local_config(loaded, &enrolled.segment, &run.data_dir, base_dir)?;
    if let Some(tune) = tune {
        tune(&mut config);
    }
    // Services the policy forbids are not declared, so the control plane routes their runs to
    // other agents; a job that arrives anyway is refused with a signed receipt.
    if let Some(allowed) = &run.policy.services {
        capabilities.services.retain(|s| allowed.contains(s));
    }
    config.policy = run.policy.clone();
    let seed = Zeroizing::new(dsops_proto::hex_decode(&enrolled.signing_seed).unwrap_or_default());
    let seed: [u8; 32] =
        seed.as_slice().try_into().map_err(|_| anyhow!("the sealed state has no signing key"))?;
    // Receipts carry the id: it must be one the wire accepts (the executor relies on it).
    dsops_proto::domain::AgentId::parse(&enrolled.agent_id, "agent_id")
        .map_err(|e| anyhow!("the sealed state holds a bad agent id: {e}"))?;
    let identity = AgentIdentity {
        agent_id: enrolled.agent_id.clone(),
        segment: enrolled.segment.clone(),
        signing_key: ed25519_dalek::SigningKey::from_bytes(&seed),
    };
    let executor = Arc::new(Executor::new(identity, config));
    let mut servers = run.servers.clone();
    // Given ones first, then the enrolled ones not given already.
    for server in &enrolled.servers {
        if !servers.contains(server) {
            servers.push(server.clone());
        }
    }
    let options = SessionOptions {
        servers,
        capabilities,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        backoff_min: run.backoff.0,
        backoff_max: run.backoff.1,
    };
    let (state_tx, state) =
        watch::channel(SessionState::Disconnected { reason: "starting".to_owned(), failures: 0 });
    let (stop, stopped) = watch::channel(false);
    let link: Arc<dyn Link> = Arc::new(link);
    let task = tokio::spawn(crate::session::run(executor, link, options, state_tx, stopped));
    Ok(RunningAgent { state, agent_id: enrolled.agent_id.clone(), stop, task })
}
