//! What a compliance report holds: the same value is written as JSON, CSV, HTML and PDF.

use serde::{Deserialize, Serialize};

/// A compliance report for one standard, one environment and one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplianceReport {
    /// The standard (`pci-dss`, ...), its edition and title.
    pub standard: StandardInfo,
    /// The environment in scope.
    pub env: String,
    /// The period's start, RFC 3339 UTC.
    pub from: String,
    /// The period's end (exclusive), RFC 3339 UTC.
    pub to: String,
    /// When the report was built, RFC 3339 UTC.
    pub generated_at: String,
    /// Ages and overdue days are as of this time: the period's end, or the build time when the
    /// period ends later.
    pub as_of: String,
    /// The configuration version in force.
    pub config_version: u64,
    /// The controls of the standard and what dsops shows for each.
    pub controls: Vec<ControlRow>,
    /// The secrets in scope (all of them, or the sample).
    pub population: Vec<PopulationRow>,
    /// The rotations that started in the period (all of them, or the sample).
    pub rotations: Vec<RotationRow>,
    /// What needs an auditor's attention.
    pub exceptions: Vec<ExceptionRow>,
    /// Figures over the whole population and period (never only the sample).
    pub summary: Summary,
    /// Set when `--sample` picked the rows shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleInfo>,
    /// Limits of the evidence (for example runs older than the kept history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The standard a report is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardInfo {
    /// `pci-dss`, `soc2`, `hipaa`, `iso27001`, `nist-800-53`.
    pub id: String,
    /// `PCI DSS 4.0.1`.
    pub title: String,
}

/// One control and what dsops shows for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRow {
    /// `8.3.9`, `CC6.1`, `IA-5(1)`.
    pub control: String,
    /// What the control asks, in brief.
    pub requirement: String,
    /// What dsops shows for it, with the figures of this report.
    pub evidence: String,
    /// `met`, `exceptions` (some items fail; see the exceptions) or `not_applicable`.
    pub status: String,
}

/// One secret of the population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationRow {
    /// Its environment.
    pub env: String,
    /// Its variable.
    pub key: String,
    /// `user` (a person's credential) or `system` (an application's or a service's).
    pub class: String,
    /// The principals that own it (the catalog's ServiceInstance), `-` when none is recorded.
    pub owner: String,
    /// The longest it may live, in days (`None`: nothing requires a rotation).
    pub required_days: Option<f64>,
    /// Where that comes from: `policy:<name>`, `schedule` or `none`.
    pub required_source: String,
    /// When it last rotated (as of the report), RFC 3339; `None`: never by dsops.
    pub last_rotated: Option<String>,
    /// Its age in days as of the report.
    pub age_days: Option<f64>,
    /// When it is next due, RFC 3339.
    pub next_due: Option<String>,
    /// Days past due (0 when not overdue).
    pub days_overdue: f64,
    /// Its strategy (`-` when it does not rotate).
    pub strategy: String,
    /// Whether it meets its requirement as of the report.
    pub compliant: bool,
}

/// One rotation of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRow {
    /// The run.
    pub run: String,
    /// Its variable.
    pub key: String,
    /// When it was requested, RFC 3339.
    pub start: String,
    /// When it ended, RFC 3339 (`None`: still in flight).
    pub end: Option<String>,
    /// How it ended: `completed`, `rolled_back`, `quarantined`, ... or where it stands.
    pub result: String,
    /// Who asked (`node-N scheduler` for a schedule).
    pub initiator: String,
    /// Why.
    pub reason: String,
    /// Who approved, with when the cluster recorded it.
    pub approvers: Vec<Approver>,
    /// Whether it broke glass.
    pub break_glass: bool,
    /// The agents that signed its receipts.
    pub agents: Vec<String>,
    /// The verify step's outcome: `passed`, `failed`, `not_reached`, or `no_target` (a value
    /// with no target, such as `random`, has nothing to verify against).
    pub verification: String,
    /// SHA-256 of its last signed receipt body, hex (`None`: no receipt).
    pub receipt_sha256: Option<String>,
}

/// An approval of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    /// The operator.
    pub operator: String,
    /// When the cluster recorded the signed approval, RFC 3339.
    pub at: String,
}

/// Something an auditor should look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionRow {
    /// `overdue`, `failed`, `quarantined`, `never_rotated`, `break_glass_unreviewed`.
    pub kind: String,
    /// The variable.
    pub key: String,
    /// The run, when one is concerned.
    pub run: Option<String>,
    /// What is wrong, in words.
    pub detail: String,
}

/// Figures over the whole population and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Secrets in scope.
    pub secrets: usize,
    /// Of them, with a rotation requirement.
    pub with_requirement: usize,
    /// Of those, meeting it.
    pub compliant: usize,
    /// `compliant / with_requirement` (1 when nothing is required).
    pub share_compliant: f64,
    /// Mean age of the secrets that rotated, days.
    pub mean_age_days: Option<f64>,
    /// Maximum age, days.
    pub max_age_days: Option<f64>,
    /// Secrets past due.
    pub overdue: usize,
    /// Secrets that rotate but never did.
    pub never_rotated: usize,
    /// Rotations that started in the period.
    pub rotations: usize,
    /// Of them, completed.
    pub rotations_completed: usize,
    /// Of them, rolled back or failed.
    pub rotations_failed: usize,
    /// Of them, quarantined.
    pub rotations_quarantined: usize,
    /// The policy maximum the chart is drawn against, days (the strictest requirement).
    pub policy_max_days: Option<f64>,
    /// The age distribution, for the chart.
    pub age_buckets: Vec<AgeBucket>,
}

/// One bar of the age chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgeBucket {
    /// `0-15d`, `>180d`, `never`.
    pub label: String,
    /// Its lower bound in days (`None` for `never`).
    pub from_days: Option<f64>,
    /// Its upper bound in days (`None`: open).
    pub to_days: Option<f64>,
    /// Secrets in it.
    pub count: usize,
    /// Whether it lies past the policy maximum.
    pub over_max: bool,
}

/// How the rows shown were sampled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleInfo {
    /// How many of each table were asked for.
    pub size: usize,
    /// The seed: the same seed over the same data picks the same items.
    pub seed: u64,
    /// The population's size before sampling.
    pub population_total: usize,
    /// The rotations' count before sampling.
    pub rotations_total: usize,
}
