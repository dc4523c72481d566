//! A report as one self-contained HTML page: styles inline, the chart as inline SVG, no script
//! and nothing fetched.

use crate::chart::{escape, svg};
use crate::layout::{Table, scope, summary, tables};
use crate::model::ComplianceReport;

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em;color:#212121;\
font-size:13px}h1{font-size:22px;margin-bottom:.2em}h2{font-size:16px;margin-top:1.6em;\
border-bottom:1px solid #bbb}table{border-collapse:collapse;width:100%;margin:.5em 0}\
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#eceff1}dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}\
dt{font-weight:bold}dd{margin:0}.met{color:#2e7d32}.exceptions{color:#c62828}\
.note{color:#555;font-style:italic}";

fn definition_list(out: &mut String, lines: &[(&str, String)]) {
    out.push_str("<dl>");
    for (label, value) in lines {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(label), escape(value)));
    }
    out.push_str("</dl>");
}

fn table(out: &mut String, table: &Table) {
    out.push_str(&format!("<h2>{}</h2>", escape(&table.title)));
    if !table.note.is_empty() {
        out.push_str(&format!("<p class=\"note\">{}</p>", escape(&table.note)));
    }
    if table.rows.is_empty() {
        return;
    }
    out.push_str("<table><thead><tr>");
    for header in &table.headers {
        out.push_str(&format!("<th>{}</th>", escape(header)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let class = match cell.as_str() {
                "met" => " class=\"met\"",
                "exceptions" => " class=\"exceptions\"",
                _ => "",
            };
            out.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// The report as an HTML page.
pub fn render(report: &ComplianceReport) -> String {
    let title = format!("{} compliance report: {}", report.standard.title, report.env);
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1>",
        escape(&title),
        escape(&title)
    );
    definition_list(&mut out, &scope(report));
    out.push_str("<h2>Summary</h2>");
    definition_list(&mut out, &summary(report));
    out.push_str(&svg(&report.summary, 640.0, 240.0));
    for t in tables(report) {
        table(&mut out, &t);
    }
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2><ul>");
        for note in &report.notes {
            out.push_str(&format!("<li>{}</li>", escape(note)));
        }
        out.push_str("</ul>");
    }
    out.push_str(
        "<p class=\"note\">Built by dsops from the replicated state. The evidence behind it \
         (signed receipts, signed approvals, the audit chain and its signed checkpoints) is in \
         the evidence bundle: <code>dsops evidence export</code>, checked offline with \
         <code>dsops evidence verify</code>.</p></body></html>\n",
    );
    out
}
