//! Where rotation commands go: a cluster through the admin API (`--server`), or the embedded
//! default in this process. Both call the same admin service; only the transport differs.

use dsops_cli::embedded::{Embedded, random_id};
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;

use crate::args::Cli;
use crate::context::require_config;
use crate::failure::Failure;
use crate::remote::Remote;

/// A cluster or the embedded control plane.
#[derive(Debug)]
pub enum Backend {
    /// A cluster.
    Remote(Remote),
    /// The embedded default.
    Embedded(Box<Embedded>),
}

/// Calls the admin method `$method` with `$request`: over the network with the leader-following
/// client, or in-process on the embedded control plane.
macro_rules! call {
    ($backend:expr, $what:literal, $method:ident, $request:expr) => {
        match $backend {
            Backend::Remote(remote) => {
                let request = $request;
                remote
                    .call($what, |mut c| {
                        let request = request.clone();
                        async move { c.$method(request).await }
                    })
                    .await
            }
            Backend::Embedded(e) => e
                .admin()
                .$method(e.request($request))
                .await
                .map(|r| r.into_inner())
                .map_err(|s| Failure::from_status($what, &s, None)),
        }
    };
}

impl Backend {
    /// The cluster when `--server` is given, else the embedded default (started here, with the
    /// local configuration stored in it first).
    pub async fn open(cli: &Cli) -> Result<Backend, Failure> {
        if let Some(remote) = Remote::from_cli(cli)? {
            return Ok(Backend::Remote(remote));
        }
        let loaded = require_config(cli)?;
        let embedded = Embedded::open(&cli.state_dir(), &cli.config_path(), &loaded).await?;
        for run in embedded.recovered() {
            eprintln!("{}", dsops_cli::follow::recovered_note(run));
        }
        Ok(Backend::Embedded(Box::new(embedded)))
    }

    /// Whether this is the embedded default.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Backend::Embedded(_))
    }

    /// Stops the embedded control plane (nothing for a cluster).
    pub async fn close(self) {
        if let Backend::Embedded(embedded) = self {
            embedded.close().await;
        }
    }

    /// Starts rotations.
    pub async fn rotate(
        &self,
        mut request: wire::RotateRequest,
    ) -> Result<wire::RotateResponse, Failure> {
        request.request_id = random_id();
        call!(self, "rotate", rotate, request)
    }

    /// Starts a rollback.
    pub async fn rollback(&self, env: &str, key: &str) -> Result<wire::RotateResponse, Failure> {
        let request = wire::RollbackRequest {
            request_id: random_id(),
            secret: Some(wire::SecretKey { env: env.to_owned(), key: key.to_owned() }),
        };
        call!(self, "rollback", rollback, request)
    }

    /// Runs by id (asked for in batches the server accepts).
    pub async fn runs(&self, ids: &[String]) -> Result<Vec<wire::RunSummary>, Failure> {
        let mut runs = Vec::with_capacity(ids.len());
        for batch in ids.chunks(dsops_proto::domain::MAX_RUN_IDS) {
            let request = wire::GetRunsRequest { run_ids: batch.to_vec(), with_steps: false };
            runs.extend(call!(self, "get runs", get_runs, request)?.runs);
        }
        Ok(runs)
    }

    /// The status of an environment.
    pub async fn status(&self, env: &str) -> Result<wire::RotationStatusResponse, Failure> {
        // Page after page (the server answers a page at a time, in name order).
        let mut all = wire::RotationStatusResponse::default();
        let mut page_token = String::new();
        loop {
            let request = wire::RotationStatusRequest {
                env: env.to_owned(),
                page_size: dsops_proto::domain::STATUS_PAGE_MAX as u32,
                page_token,
            };
            let page: wire::RotationStatusResponse =
                call!(self, "rotation status", rotation_status, request)?;
            all.secrets.extend(page.secrets);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// The history of one secret.
    pub async fn history(
        &self,
        env: &str,
        key: &str,
        limit: u32,
    ) -> Result<wire::RotationHistoryResponse, Failure> {
        let request = wire::RotationHistoryRequest {
            secret: Some(wire::SecretKey { env: env.to_owned(), key: key.to_owned() }),
            limit,
        };
        call!(self, "rotation history", rotation_history, request)
    }

    /// Audit events (a page).
    pub async fn list_audit(
        &self,
        request: wire::ListAuditRequest,
    ) -> Result<wire::ListAuditResponse, Failure> {
        call!(self, "read the audit log", list_audit, request)
    }

    /// A compliance report (JSON).
    pub async fn compliance_report(
        &self,
        request: wire::ComplianceReportRequest,
    ) -> Result<wire::ComplianceReportResponse, Failure> {
        call!(self, "compliance report", compliance_report, request)
    }

    /// A new evidence key generation.
    pub async fn rotate_evidence_key(&self) -> Result<wire::RotateEvidenceKeyResponse, Failure> {
        let request =
            wire::RotateEvidenceKeyRequest { request_id: dsops_cli::embedded::random_id() };
        call!(self, "evidence key rotate", rotate_evidence_key, request)
    }

    /// The node's metrics (Prometheus text).
    pub async fn metrics(
        &self,
        request: wire::GetMetricsRequest,
    ) -> Result<wire::GetMetricsResponse, Failure> {
        call!(self, "metrics", get_metrics, request)
    }
}
