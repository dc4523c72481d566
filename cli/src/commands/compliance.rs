//! `dsops rotation compliance`: a compliance report for a standard, an environment and a
//! period (see `dsops_reports`), as a summary for people, JSON, CSV, HTML or PDF.

use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, ValueEnum};
use dsops_proto::wire::admin as wire;
use dsops_reports::{ComplianceReport, Format, Standard};

use crate::args::{Cli, OutputFormat};
use crate::backend::Backend;
use crate::failure::Failure;
use crate::output::{print_json, print_table, table};

/// `dsops rotation compliance`.
#[derive(Debug, Args)]
pub struct ComplianceArgs {
    /// The standard: pci-dss, soc2, hipaa, iso27001 or nist-800-53.
    #[arg(long, value_parser = parse_standard)]
    pub standard: Standard,
    /// The environment.
    #[arg(short, long)]
    pub env: String,
    /// The start of the period (a date or an RFC 3339 time); default: --days before --to.
    #[arg(long, value_parser = super::evidence::parse_from)]
    pub from: Option<DateTime<Utc>>,
    /// The end of the period (a date, which it includes, or an RFC 3339 time); default: now.
    #[arg(long, value_parser = super::evidence::parse_to)]
    pub to: Option<DateTime<Utc>>,
    /// The period's length when --from is not given.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Show a deterministic sample of this many secrets and rotations (the summary still
    /// covers them all).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sample: Option<u32>,
    /// The sample's seed: the same seed over the same state picks the same items.
    #[arg(long, default_value_t = 0, requires = "sample")]
    pub seed: u64,
    /// Write the report as JSON, CSV (one table, see --table), HTML or PDF (PDF needs -o FILE).
    #[arg(long, value_enum)]
    pub export: Option<ReportExport>,
    /// The table --export csv writes.
    #[arg(long, default_value = "population", value_parser = ["population", "rotations", "exceptions", "controls"])]
    pub table: String,
}

/// A format `--export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportExport {
    /// The report as JSON.
    Json,
    /// One table as RFC 4180 CSV.
    Csv,
    /// A self-contained page with the chart as inline SVG.
    Html,
    /// A PDF to hand an auditor.
    Pdf,
}

fn parse_standard(text: &str) -> Result<Standard, String> {
    Standard::parse(text)
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

/// Runs `dsops rotation compliance`.
pub async fn run(cli: &Cli, args: &ComplianceArgs) -> Result<(), Failure> {
    let to = args.to.unwrap_or_else(Utc::now);
    let from = args.from.unwrap_or(to - TimeDelta::days(i64::from(args.days)));
    if from >= to {
        return Err(Failure::invalid("--from: must be before --to"));
    }
    let file = match &cli.output {
        OutputFormat::File(path) => Some(path.clone()),
        _ => None,
    };
    if args.export == Some(ReportExport::Pdf) && file.is_none() {
        return Err(Failure::invalid("--export pdf writes a file: add -o report.pdf"));
    }
    if file.is_some() && args.export.is_none() {
        return Err(Failure::invalid("-o FILE writes an export: add --export json|csv|html|pdf"));
    }
    let request = wire::ComplianceReportRequest {
        standard: args.standard.id().to_owned(),
        env: args.env.clone(),
        from: Some(timestamp(from)),
        to: Some(timestamp(to)),
        sample: args.sample.unwrap_or(0),
        seed: args.seed,
    };
    let backend = Backend::open(cli).await?;
    let response = backend.compliance_report(request).await;
    backend.close().await;
    let report: ComplianceReport = serde_json::from_slice(&response?.report_json).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!("the server's report does not parse: {e}"))
    })?;
    let Some(export) = args.export else {
        return show(cli, &report);
    };
    let format = match export {
        ReportExport::Json => Format::Json,
        ReportExport::Csv => Format::Csv,
        ReportExport::Html => Format::Html,
        ReportExport::Pdf => Format::Pdf,
    };
    let bytes = dsops_reports::render(&report, format, &args.table)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{e}")))?;
    match file {
        Some(path) => {
            std::fs::write(&path, &bytes).map_err(|e| {
                Failure::Runtime(anyhow::anyhow!("writing {}: {e}", path.display()))
            })?;
            eprintln!(
                "wrote {} ({} bytes): {} for {}, {} secrets, {} rotations, {} exceptions",
                path.display(),
                bytes.len(),
                report.standard.title,
                report.env,
                report.summary.secrets,
                report.summary.rotations,
                report.exceptions.len()
            );
        }
        None => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("writing the report: {e}")))?;
        }
    }
    Ok(())
}

/// The summary, the controls and the exceptions, for people.
fn show(cli: &Cli, report: &ComplianceReport) -> Result<(), Failure> {
    if cli.output == OutputFormat::Json {
        return print_json(report);
    }
    let mut scope = table(&["", ""]);
    for (label, value) in dsops_reports::layout::scope(report)
        .into_iter()
        .chain(dsops_reports::layout::summary(report))
    {
        scope.add_row(vec![label.to_owned(), value]);
    }
    print_table(&scope);
    out!("");
    let mut controls = table(&["CONTROL", "STATUS", "WHAT DSOPS SHOWS"]);
    for c in &report.controls {
        controls.add_row(vec![c.control.clone(), c.status.replace('_', " "), c.evidence.clone()]);
    }
    print_table(&controls);
    if !report.exceptions.is_empty() {
        out!("");
        let mut exceptions = table(&["EXCEPTION", "SECRET", "RUN", "DETAIL"]);
        for e in &report.exceptions {
            exceptions.add_row(vec![
                e.kind.replace('_', " "),
                e.key.clone(),
                e.run.clone().unwrap_or_else(|| "-".into()),
                e.detail.clone(),
            ]);
        }
        print_table(&exceptions);
    }
    for note in &report.notes {
        out!("note: {note}");
    }
    Ok(())
}
