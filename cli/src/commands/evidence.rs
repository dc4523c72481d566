//! `dsops evidence export|verify|key rotate`: an evidence bundle of a period, its offline check
//! (see `dsops_evidence` for what a bundle holds and what is checked), and a new generation of
//! the evidence key.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use dsops_proto::wire::admin as wire;
use dsops_proto::wire::admin::admin_server::Admin;
use serde::Serialize;

use crate::args::{Cli, OutputFormat};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::print_json;

/// `dsops evidence ...`.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write the evidence bundle of a period: the audit chain with its signed checkpoints, the
    /// receipts and approvals of the environment's rotations, the certificates, the
    /// configuration; signed by the cluster's evidence key.
    #[command(
        after_help = "--from and --to take a date (2026-12-01, a whole day: --to includes it) or an RFC 3339 time.\n\nEXAMPLES:\n  dsops evidence export --env production --from 2026-10-01 --to 2026-12-31 -o bundle.zip\n  dsops evidence verify bundle.zip"
    )]
    Export {
        /// Only this environment's rotations (the audit chain is always whole).
        #[arg(long)]
        env: Option<String>,
        /// The start of the period.
        #[arg(long, value_parser = parse_from)]
        from: DateTime<Utc>,
        /// The end of the period.
        #[arg(long, value_parser = parse_to)]
        to: DateTime<Utc>,
    },
    /// Check a bundle without a server or a network: every file against the signed manifest,
    /// the certificates, every chain link and checkpoint, every receipt and approval. Exit
    /// status: 0 verified; 10 unreadable; 11 manifest; 12 signature or certificate; 13 chain;
    /// 14 checkpoint; 15 receipt; 16 approval.
    #[command(
        after_help = "EXAMPLES:\n  dsops evidence verify bundle.zip\n  dsops evidence verify bundle.zip --ca root-ca.pem"
    )]
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// The cluster's root CA certificate (PEM) the bundle must chain to; without it the
        /// root's fingerprint is printed for you to compare.
        #[arg(long, value_name = "PEM")]
        ca: Option<PathBuf>,
    },
    /// The cluster's evidence key, which signs the audit chain's checkpoints and the bundles.
    #[command(subcommand)]
    Key(EvidenceKeyCommand),
}

/// `dsops evidence key ...`.
#[derive(Debug, Subcommand)]
pub enum EvidenceKeyCommand {
    /// Start a new generation of the evidence key (cluster admin), as a key-rotation policy asks:
    /// later checkpoints and bundles are signed with it; every bundle carries each generation's
    /// certificate, so what the earlier ones signed still verifies.
    #[command(
        after_help = "EXAMPLES:\n  dsops evidence key rotate\n  dsops evidence key rotate --output json"
    )]
    Rotate,
}

fn parse_time(text: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        format!(
            "expected a date (2026-12-01) or an RFC 3339 time (2026-12-01T03:00:00Z), got {text:?}"
        )
    })?;
    let day = if end_of_day { day.succ_opt().ok_or("a date too far ahead")? } else { day };
    Ok(day.and_hms_opt(0, 0, 0).ok_or("no midnight that day")?.and_utc())
}

pub(crate) fn parse_from(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, false)
}

pub(crate) fn parse_to(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time(text, true)
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// Runs `dsops evidence ...`.
pub async fn run(cli: &Cli, command: &EvidenceCommand) -> Result<(), Failure> {
    match command {
        EvidenceCommand::Export { env, from, to } => export(cli, env.as_deref(), *from, *to).await,
        EvidenceCommand::Verify { bundle, ca } => verify(cli, bundle, ca.as_ref()),
        EvidenceCommand::Key(EvidenceKeyCommand::Rotate) => rotate_key(cli).await,
    }
}

async fn rotate_key(cli: &Cli) -> Result<(), Failure> {
    let backend = Backend::open(cli).await?;
    let response = backend.rotate_evidence_key().await;
    backend.close().await;
    let response = response?;
    if cli.output == OutputFormat::Json {
        return print_json(&serde_json::json!({
            "generation": response.generation,
            "public_key_hex": response.public_key_hex,
            "previous_generation": response.previous_generation,
            "first_checkpoint_seq": response.first_checkpoint_seq,
        }));
    }
    out!(
        "evidence key generation {} signs from audit event {} on (public key {}); generation {} \
         signs no more, and what it signed still verifies",
        response.generation,
        response.first_checkpoint_seq,
        response.public_key_hex,
        response.previous_generation
    );
    Ok(())
}

async fn export(
    cli: &Cli,
    env: Option<&str>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), Failure> {
    let OutputFormat::File(out) = &cli.output else {
        return Err(Failure::invalid("evidence export: name the bundle to write with -o FILE"));
    };
    if from >= to {
        return Err(Failure::invalid("--from: must be before --to"));
    }
    let request = wire::ExportEvidenceRequest {
        env: env.unwrap_or_default().to_owned(),
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        request_id: dsops_cli::embedded::random_id(),
    };
    let backend = Backend::open(cli).await?;
    let bundle = fetch(&backend, request).await;
    backend.close().await;
    let bundle = bundle?;
    std::fs::write(out, &bundle)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("writing {}: {e}", out.display())))?;
    let report = dsops_evidence::verify(&bundle, None);
    let failed = report.failure();
    eprintln!(
        "wrote {} ({} bytes); {}",
        out.display(),
        bundle.len(),
        match failed {
            None => "it verifies".to_owned(),
            Some(f) => format!("it does NOT verify ({}): run dsops evidence verify", f.name()),
        }
    );
    match failed {
        None => Ok(()),
        Some(_) => Err(Failure::Runtime(anyhow::anyhow!("the exported bundle does not verify"))),
    }
}

/// The bundle's bytes, chunk by chunk, from a cluster or the embedded default.
async fn fetch(
    backend: &Backend,
    request: wire::ExportEvidenceRequest,
) -> Result<Vec<u8>, Failure> {
    use tokio_stream::StreamExt;
    let what = "export evidence";
    let mut bundle = Vec::new();
    match backend {
        Backend::Remote(remote) => {
            let mut stream = remote
                .call(what, |mut c| {
                    let request = request.clone();
                    async move { c.export_evidence(request).await }
                })
                .await?;
            while let Some(chunk) =
                stream.message().await.map_err(|s| Failure::from_status(what, &s, None))?
            {
                bundle.extend_from_slice(&chunk.data);
            }
        }
        Backend::Embedded(embedded) => {
            let mut stream = embedded
                .admin()
                .export_evidence(embedded.request(request))
                .await
                .map_err(|s| Failure::from_status(what, &s, None))?
                .into_inner();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|s| Failure::from_status(what, &s, None))?;
                bundle.extend_from_slice(&chunk.data);
            }
        }
    }
    Ok(bundle)
}

/// One check, as printed.
#[derive(Debug, Serialize)]
struct CheckRow {
    class: &'static str,
    ok: bool,
    detail: String,
}

fn verify(cli: &Cli, bundle: &PathBuf, ca: Option<&PathBuf>) -> Result<(), Failure> {
    let bytes = std::fs::read(bundle)
        .map_err(|e| Failure::invalid(format!("reading {}: {e}", bundle.display())))?;
    let trusted = match ca {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::invalid(format!("--ca {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let report = dsops_evidence::verify(&bytes, trusted.as_deref());
    let rows: Vec<CheckRow> = report
        .checks
        .iter()
        .map(|c| CheckRow { class: c.class.name(), ok: c.ok, detail: c.detail.clone() })
        .collect();
    let failure = report.failure();
    if cli.output == OutputFormat::Json {
        print_json(&serde_json::json!({
            "bundle": bundle.display().to_string(),
            "verified": failure.is_none(),
            "failure": failure.map(|f| f.name()),
            "root_fingerprint": report.root_fingerprint,
            "scope": report.scope,
            "checks": rows,
        }))?;
    } else {
        if let Some(scope) = &report.scope {
            let at = |ms: u64| {
                DateTime::<Utc>::from_timestamp_millis(ms as i64).map_or_else(
                    || ms.to_string(),
                    |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                )
            };
            out!(
                "bundle {}: cluster {}, environment {}, {} to {}, made by {} at {}",
                bundle.display(),
                scope.cluster_id,
                if scope.env.is_empty() { "all" } else { &scope.env },
                at(scope.from_ms),
                at(scope.to_ms),
                scope.created_by,
                at(scope.created_at_ms)
            );
        }
        if !report.root_fingerprint.is_empty() {
            out!("root CA SHA-256 fingerprint: {}", report.root_fingerprint);
        }
        for row in &rows {
            out!("{} {:<10} {}", if row.ok { "ok  " } else { "FAIL" }, row.class, row.detail);
        }
        match failure {
            None => out!("verified"),
            Some(f) => out!("NOT verified: {} check failed", f.name()),
        }
    }
    if let Some(failure) = failure {
        std::process::exit(failure.exit_code());
    }
    Ok(())
}
