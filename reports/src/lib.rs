//! Compliance reports: for a standard (`pci-dss`, `soc2`, `hipaa`, `iso27001`, `nist-800-53`),
//! an environment and a period, the controls with what dsops shows for each, the population of
//! secrets with their ages against the required interval, the rotations of the period with
//! their initiators, approvers, agents and receipt hashes, the exceptions, a summary with an
//! age chart, and a deterministic sample for auditors.
//!
//! [`build()`] makes the report from the configuration in force and the replicated state; the
//! writers turn it into JSON, CSV ([`csv`]), HTML ([`html`]) and PDF ([`pdf`]). Nothing here
//! does I/O or needs a runtime, so the CLI on the embedded default, the admin API and the
//! reports API produce the same bytes from the same state.

pub mod build;
pub mod chart;
pub mod csv;
pub mod html;
pub mod layout;
mod measure;
pub mod model;
pub mod pdf;
pub mod standards;
#[cfg(test)]
mod tests;

pub use build::{ReportError, ReportRequest, build};
pub use model::ComplianceReport;
pub use standards::Standard;

/// A format a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The model as JSON.
    Json,
    /// One table as CSV.
    Csv,
    /// A self-contained page.
    Html,
    /// A document for people.
    Pdf,
}

impl Format {
    /// `json`, `csv`, `html`, `pdf`.
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            other => Err(format!("unknown format {other:?}; one of: json, csv, html, pdf")),
        }
    }

    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }
}

/// `report` in `format`; for CSV, the table `table` (one of [`csv::TABLES`]).
pub fn render(report: &ComplianceReport, format: Format, table: &str) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => serde_json::to_vec_pretty(report).map_err(|e| e.to_string()),
        Format::Csv => csv::table(report, table)
            .map(String::into_bytes)
            .ok_or_else(|| format!("unknown table {table:?}; one of: {}", csv::TABLES.join(", "))),
        Format::Html => Ok(html::render(report).into_bytes()),
        Format::Pdf => pdf::render(report).map_err(|e| e.to_string()),
    }
}
