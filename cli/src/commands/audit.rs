//! `dsops audit list` and `dsops rotation audit`: the audit log, with a check of its hash chain,
//! on a cluster or the embedded default.

use chrono::{DateTime, Utc};
use dsops_proto::wire::admin as wire;
use serde::Serialize;

use super::rotation::{short, time};
use crate::args::{AuditCommand, Cli, OutputFormat};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};
use dsops_cli::follow::printable;

/// Formats `dsops rotation audit` can export besides table and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditExport {
    /// Comma-separated values with a header row (RFC 4180), on standard output.
    Csv,
}

/// An audit event, as printed.
#[derive(Debug, Serialize)]
struct AuditRow {
    seq: u64,
    at_unix: Option<i64>,
    actor: String,
    action: String,
    subject: String,
    detail: String,
    hash: String,
}

impl From<&wire::AuditEntry> for AuditRow {
    fn from(e: &wire::AuditEntry) -> AuditRow {
        AuditRow {
            seq: e.seq,
            at_unix: e.at.map(|t| t.seconds),
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            detail: e.detail.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// `dsops audit list`.
pub async fn list(cli: &Cli, command: &AuditCommand) -> Result<(), Failure> {
    let AuditCommand::List { after, limit, action, subject } = command;
    let request = wire::ListAuditRequest {
        after: *after,
        limit: *limit,
        action_prefix: action.clone(),
        subject: subject.clone(),
        ..wire::ListAuditRequest::default()
    };
    let backend = Backend::open(cli).await?;
    let response = backend.list_audit(request).await;
    backend.close().await;
    let response = response?;
    let rows: Vec<AuditRow> = response.events.iter().map(AuditRow::from).collect();
    show(cli, &rows, response.verified, None)
}

/// `dsops rotation audit --env E --days N`: the events of an environment's secrets over the
/// last days, read page by page.
pub async fn rotation(
    cli: &Cli,
    env: &str,
    days: u32,
    export: Option<AuditExport>,
) -> Result<(), Failure> {
    let from = Utc::now() - chrono::Duration::days(i64::from(days));
    let backend = Backend::open(cli).await?;
    let read = read_since(&backend, env, from).await;
    backend.close().await;
    let (rows, verified) = read?;
    show(cli, &rows, verified, export)
}

async fn read_since(
    backend: &Backend,
    env: &str,
    from: DateTime<Utc>,
) -> Result<(Vec<AuditRow>, bool), Failure> {
    let mut rows = Vec::new();
    let mut verified = true;
    let mut after = 0;
    loop {
        let request = wire::ListAuditRequest {
            after,
            limit: 1_000,
            from: Some(prost_types::Timestamp { seconds: from.timestamp(), nanos: 0 }),
            subject_prefix: format!("{env}/"),
            ..wire::ListAuditRequest::default()
        };
        let page = backend.list_audit(request).await?;
        verified &= page.verified;
        rows.extend(page.events.iter().map(AuditRow::from));
        if page.last_read >= page.head_seq || page.last_read <= after {
            return Ok((rows, verified));
        }
        after = page.last_read;
    }
}

/// One CSV field, quoted when it must be (RFC 4180).
/// One CSV field, quoted and formula-safe (see [`dsops_reports::csv::field`]).
fn csv_field(text: &str) -> String {
    dsops_reports::csv::field(text)
}

fn show(
    cli: &Cli,
    rows: &[AuditRow],
    verified: bool,
    export: Option<AuditExport>,
) -> Result<(), Failure> {
    let stamp = |s: Option<i64>| s.map(|s| prost_types::Timestamp { seconds: s, nanos: 0 });
    if export == Some(AuditExport::Csv) {
        out!("seq,at,actor,action,subject,detail,hash");
        for r in rows {
            let at = r
                .at_unix
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default();
            let fields =
                [&r.actor, &r.action, &r.subject, &r.detail, &r.hash].map(|f| csv_field(f));
            out!("{},{at},{}", r.seq, fields.join(","));
        }
    } else if cli.output == OutputFormat::Json {
        print_json(&serde_json::json!({ "events": rows, "verified": verified }))?;
    } else {
        let mut t = table(&["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]);
        for r in rows {
            t.add_row(vec![
                r.seq.to_string(),
                short(time(&stamp(r.at_unix))),
                r.actor.clone(),
                r.action.clone(),
                r.subject.clone(),
                printable(&r.detail).into_owned(),
            ]);
        }
        print_table(&t);
    }
    if !verified {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the hash chain of these events does not verify: the audit log was altered"
        )));
    }
    Ok(())
}
