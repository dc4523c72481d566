//! A report as RFC 4180 CSV: one table per file (`population`, `rotations`, `exceptions`,
//! `controls`), a header row first, CRLF line ends.

use crate::model::ComplianceReport;

/// The tables a report is written as, in order.
pub const TABLES: [&str; 4] = ["population", "rotations", "exceptions", "controls"];

/// One CSV field: quoted when it holds a comma, a quote or a line break. A field a spreadsheet
/// would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a
/// leading `'`, so text an operator typed (a reason) cannot become a formula on an auditor's
/// machine.
pub fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn line(out: &mut String, fields: &[String]) {
    let fields: Vec<String> = fields.iter().map(|f| field(f)).collect();
    out.push_str(&fields.join(","));
    out.push_str("\r\n");
}

fn number(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// The table `name` (one of [`TABLES`]) of `report`; `None` for another name.
pub fn table(report: &ComplianceReport, name: &str) -> Option<String> {
    let mut out = String::new();
    let s = |text: &str| text.to_owned();
    match name {
        "population" => {
            line(
                &mut out,
                &[
                    "env",
                    "key",
                    "class",
                    "owner",
                    "required_days",
                    "required_source",
                    "last_rotated",
                    "age_days",
                    "next_due",
                    "days_overdue",
                    "strategy",
                    "compliant",
                ]
                .map(s),
            );
            for r in &report.population {
                line(
                    &mut out,
                    &[
                        r.env.clone(),
                        r.key.clone(),
                        r.class.clone(),
                        r.owner.clone(),
                        number(r.required_days),
                        r.required_source.clone(),
                        r.last_rotated.clone().unwrap_or_default(),
                        number(r.age_days),
                        r.next_due.clone().unwrap_or_default(),
                        r.days_overdue.to_string(),
                        r.strategy.clone(),
                        r.compliant.to_string(),
                    ],
                );
            }
        }
        "rotations" => {
            line(
                &mut out,
                &[
                    "run",
                    "key",
                    "start",
                    "end",
                    "result",
                    "initiator",
                    "reason",
                    "approvers",
                    "break_glass",
                    "agents",
                    "verification",
                    "receipt_sha256",
                ]
                .map(s),
            );
            for r in &report.rotations {
                let approvers: Vec<String> =
                    r.approvers.iter().map(|a| format!("{} {}", a.operator, a.at)).collect();
                line(
                    &mut out,
                    &[
                        r.run.clone(),
                        r.key.clone(),
                        r.start.clone(),
                        r.end.clone().unwrap_or_default(),
                        r.result.clone(),
                        r.initiator.clone(),
                        r.reason.clone(),
                        approvers.join("; "),
                        r.break_glass.to_string(),
                        r.agents.join("; "),
                        r.verification.clone(),
                        r.receipt_sha256.clone().unwrap_or_default(),
                    ],
                );
            }
        }
        "exceptions" => {
            line(&mut out, &["kind", "key", "run", "detail"].map(s));
            for e in &report.exceptions {
                line(
                    &mut out,
                    &[
                        e.kind.clone(),
                        e.key.clone(),
                        e.run.clone().unwrap_or_default(),
                        e.detail.clone(),
                    ],
                );
            }
        }
        "controls" => {
            line(&mut out, &["standard", "control", "requirement", "evidence", "status"].map(s));
            for c in &report.controls {
                line(
                    &mut out,
                    &[
                        report.standard.id.clone(),
                        c.control.clone(),
                        c.requirement.clone(),
                        c.evidence.clone(),
                        c.status.clone(),
                    ],
                );
            }
        }
        _ => return None,
    }
    Some(out)
}
