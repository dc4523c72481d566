//! Talking to a cluster: the admin client, found through `--server`/`DSOPS_SERVER` and
//! authenticated with the operator bundle in `--credentials`/`DSOPS_CREDENTIALS`.
//!
//! A follower answers `not_leader` with the leader's address: the call is retried there with the
//! same request id (so a write is applied once). While no leader is known, a spinner shows that
//! the CLI is waiting, for up to 30 seconds.

use std::time::{Duration, Instant};

use anyhow::Context;
use dsops_identity::Credentials;
use dsops_identity::{API_SERVER_NAME, client_config};
use dsops_proto::ErrorCode;
use dsops_proto::wire::admin::admin_client::AdminClient;
use dsops_telemetry::TracedChannel as Channel;

use crate::args::Cli;
use crate::failure::Failure;

/// How long to wait for a leader before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// How long one call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to the cluster.
#[derive(Debug)]
pub struct Remote {
    server: String,
    auth: Auth,
    spinner: bool,
}

/// How the CLI proves who it is and knows the cluster.
#[derive(Debug)]
enum Auth {
    /// An operator bundle.
    Credentials(Credentials),
    /// No certificate yet (enrolment): the cluster's peer CA is pinned by its fingerprint.
    Pinned(String),
}

/// A fresh request id (32 hex digits): the same for every retry of one command.
pub fn request_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    dsops_proto::hex(&bytes)
}

impl Remote {
    /// From the command line; `None` when no server is configured (the embedded default).
    pub fn from_cli(cli: &Cli) -> Result<Option<Remote>, Failure> {
        let Some(server) = cli.server.clone() else { return Ok(None) };
        let dir = cli.credentials.clone().ok_or_else(|| Failure::invalid("--server needs --credentials DIR (or DSOPS_CREDENTIALS): the operator bundle from `dsops-server init`"))?;
        let credentials =
            Credentials::read(&dir).map_err(|e| Failure::invalid(format!("credentials: {e}")))?;
        Ok(Some(Remote {
            server,
            auth: Auth::Credentials(credentials),
            spinner: cli.output == crate::args::OutputFormat::Table,
        }))
    }

    /// A connection without a certificate that trusts only the peer CA with `ca_fingerprint`
    /// (enrolment with an invitation).
    pub fn pinned(server: String, ca_fingerprint: String, spinner: bool) -> Remote {
        Remote { server, auth: Auth::Pinned(ca_fingerprint), spinner }
    }

    /// The directory of the operator bundle in use, if any.
    pub fn credentials(&self) -> Option<&Credentials> {
        match &self.auth {
            Auth::Credentials(credentials) => Some(credentials),
            Auth::Pinned(_) => None,
        }
    }

    /// Requires a server.
    pub fn require(cli: &Cli) -> Result<Remote, Failure> {
        Remote::from_cli(cli)?.ok_or_else(|| Failure::invalid("this command needs a cluster: give --server HOST:PORT (or DSOPS_SERVER) and --credentials DIR"))
    }

    fn client(&self, address: &str) -> anyhow::Result<AdminClient<Channel>> {
        let tls = match &self.auth {
            Auth::Credentials(credentials) => {
                client_config(&credentials.ca_pem, Some(&credentials.identity))
                    .context("TLS configuration from the credentials")?
            }
            Auth::Pinned(fingerprint) => dsops_identity::pinned_client_config(fingerprint)
                .context("TLS configuration from the token")?,
        };
        let channel = dsops_identity::channel(address, API_SERVER_NAME, tls)?;
        Ok(AdminClient::new(dsops_telemetry::traced(channel))
            .max_decoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE)
            .max_encoding_message_size(dsops_proto::domain::MAX_ADMIN_MESSAGE))
    }

    /// Calls `call` at the leader: follows `not_leader` redirects and waits (with a spinner)
    /// while the cluster has no leader. `call` must reuse its request id on every attempt.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Failure>
    where
        F: FnMut(AdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let mut target = self.server.clone();
        let mut spinner: Option<indicatif::ProgressBar> = None;
        let mut pause = Duration::from_millis(100);
        let mut hops = 0;
        let result = loop {
            let client = self.client(&target).map_err(Failure::Runtime)?;
            // A node that accepts the connection but never answers must not hang the CLI.
            let answer =
                tokio::time::timeout(REQUEST_TIMEOUT, call(client)).await.unwrap_or_else(|_| {
                    Err(tonic::Status::unavailable(format!(
                        "no answer from {target} within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    )))
                });
            match answer {
                Ok(response) => break Ok(response.into_inner()),
                Err(status) => {
                    let code = ErrorCode::from_status(&status);
                    if code == ErrorCode::NotLeader
                        && let Some(leader) = dsops_proto::error::leader_hint(&status)
                        && leader != target
                        && hops < 5
                    {
                        // Bounded: two nodes pointing at each other must not loop forever.
                        hops += 1;
                        target = leader;
                        continue;
                    }
                    if code.is_retryable() && started.elapsed() < LEADER_WAIT {
                        if self.spinner && spinner.is_none() {
                            let bar = indicatif::ProgressBar::new_spinner();
                            bar.set_message(format!(
                                "{what}: waiting for a leader ({})",
                                status.message()
                            ));
                            bar.enable_steady_tick(Duration::from_millis(120));
                            spinner = Some(bar);
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(2));
                        // Start over from the configured server: the old leader may be gone.
                        target = self.server.clone();
                        continue;
                    }
                    break Err(Failure::from_status(what, &status, Some(&target)));
                }
            }
        };
        if let Some(bar) = spinner {
            bar.finish_and_clear();
        }
        result
    }
}
