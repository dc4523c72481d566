//! What a person reads, shared by the HTML and PDF reports: the scope lines, the summary
//! figures and the tables with their columns.

use crate::model::ComplianceReport;

/// A table for people.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its heading.
    pub title: String,
    /// A sentence under the heading (empty: none).
    pub note: String,
    /// Column headings.
    pub headers: Vec<&'static str>,
    /// Relative column widths (the PDF's; HTML lets the browser decide).
    pub widths: Vec<f32>,
    /// The rows, each as many cells as headers.
    pub rows: Vec<Vec<String>>,
}

/// `2026-12-05T10:00:00Z` → `2026-12-05 10:00`.
pub fn short(time: &str) -> String {
    time.get(..16).map(|t| t.replacen('T', " ", 1)).unwrap_or_else(|| time.to_owned())
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v}"))
}

/// The scope: what the report covers, as label and value.
pub fn scope(report: &ComplianceReport) -> Vec<(&'static str, String)> {
    let mut lines = vec![
        ("Standard", report.standard.title.clone()),
        ("Environment", report.env.clone()),
        ("Period", format!("{} to {} (UTC)", short(&report.from), short(&report.to))),
        ("Ages as of", short(&report.as_of)),
        ("Generated", short(&report.generated_at)),
        ("Configuration", format!("version {}", report.config_version)),
    ];
    if let Some(sample) = &report.sample {
        lines.push((
            "Sample",
            format!(
                "{} of {} secrets and {} of {} rotations, seed {} (the same seed picks the same \
                 items)",
                report.population.len(),
                sample.population_total,
                report.rotations.len(),
                sample.rotations_total,
                sample.seed
            ),
        ));
    }
    lines
}

/// The summary figures, as label and value.
pub fn summary(report: &ComplianceReport) -> Vec<(&'static str, String)> {
    let s = &report.summary;
    vec![
        (
            "Compliant",
            format!(
                "{:.1}% ({} of {} secrets with a rotation requirement)",
                s.share_compliant * 100.0,
                s.compliant,
                s.with_requirement
            ),
        ),
        ("Secrets in scope", s.secrets.to_string()),
        ("Mean age", format!("{} days", opt(s.mean_age_days))),
        ("Maximum age", format!("{} days", opt(s.max_age_days))),
        ("Overdue", s.overdue.to_string()),
        ("Never rotated", s.never_rotated.to_string()),
        (
            "Rotations in the period",
            format!(
                "{} ({} completed, {} failed, {} quarantined)",
                s.rotations, s.rotations_completed, s.rotations_failed, s.rotations_quarantined
            ),
        ),
        ("Exceptions", report.exceptions.len().to_string()),
    ]
}

/// The tables, in reading order: controls, exceptions, population, rotations.
pub fn tables(report: &ComplianceReport) -> Vec<Table> {
    let sampled = report.sample.is_some();
    vec![
        Table {
            title: format!("Controls: {}", report.standard.title),
            note: String::new(),
            headers: vec!["Control", "Requirement", "What dsops shows", "Status"],
            widths: vec![1.2, 4.0, 4.4, 1.3],
            rows: report
                .controls
                .iter()
                .map(|c| {
                    vec![
                        c.control.clone(),
                        c.requirement.clone(),
                        c.evidence.clone(),
                        c.status.replace('_', " "),
                    ]
                })
                .collect(),
        },
        Table {
            title: "Exceptions".into(),
            note: if report.exceptions.is_empty() { "None.".into() } else { String::new() },
            headers: vec!["Kind", "Secret", "Run", "Detail"],
            widths: vec![1.8, 2.0, 1.6, 5.6],
            rows: report
                .exceptions
                .iter()
                .map(|e| {
                    vec![
                        e.kind.replace('_', " "),
                        e.key.clone(),
                        e.run.clone().unwrap_or_else(|| "-".into()),
                        e.detail.clone(),
                    ]
                })
                .collect(),
        },
        Table {
            title: "Population".into(),
            note: if sampled {
                "A sample; the summary covers every secret.".into()
            } else {
                String::new()
            },
            headers: vec![
                "Secret",
                "Class",
                "Owner",
                "Required",
                "Source",
                "Last rotated",
                "Age",
                "Next due",
                "Overdue",
                "Strategy",
            ],
            widths: vec![2.2, 0.9, 1.3, 0.9, 1.5, 1.6, 0.8, 1.6, 0.9, 1.0],
            rows: report
                .population
                .iter()
                .map(|r| {
                    vec![
                        r.key.clone(),
                        r.class.clone(),
                        r.owner.clone(),
                        r.required_days.map_or_else(|| "-".into(), |d| format!("{d}d")),
                        r.required_source.clone(),
                        r.last_rotated.as_deref().map_or_else(|| "never".into(), short),
                        r.age_days.map_or_else(|| "-".into(), |d| format!("{d}d")),
                        r.next_due.as_deref().map_or_else(|| "-".into(), short),
                        if r.days_overdue > 0.0 {
                            format!("{}d", r.days_overdue)
                        } else {
                            "-".into()
                        },
                        r.strategy.clone(),
                    ]
                })
                .collect(),
        },
        Table {
            title: "Rotations in the period".into(),
            note: if report.rotations.is_empty() {
                "None.".into()
            } else if sampled {
                "A sample; the summary counts every rotation.".into()
            } else {
                String::new()
            },
            headers: vec![
                "Run",
                "Secret",
                "Start",
                "End",
                "Result",
                "Initiator",
                "Approvers",
                "Agent",
                "Verified",
                "Receipt SHA-256",
            ],
            widths: vec![1.5, 1.6, 1.4, 1.4, 1.1, 1.4, 1.6, 1.2, 0.9, 1.4],
            rows: report
                .rotations
                .iter()
                .map(|r| {
                    let approvers: Vec<String> = r
                        .approvers
                        .iter()
                        .map(|a| format!("{} {}", a.operator, short(&a.at)))
                        .collect();
                    let mut initiator = r.initiator.clone();
                    if r.break_glass {
                        initiator.push_str(" (break-glass)");
                    }
                    vec![
                        r.run.clone(),
                        r.key.clone(),
                        short(&r.start),
                        r.end.as_deref().map_or_else(|| "-".into(), short),
                        r.result.replace('_', " "),
                        initiator,
                        if approvers.is_empty() { "-".into() } else { approvers.join(", ") },
                        r.agents.join(", "),
                        r.verification.replace('_', " "),
                        r.receipt_sha256
                            .as_deref()
                            .map_or_else(|| "-".into(), |h| h[..16.min(h.len())].to_owned()),
                    ]
                })
                .collect(),
        },
    ]
}
