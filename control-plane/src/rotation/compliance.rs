//! Compliance reports from the cluster's state (see `dsops_reports`): for the admin API, the
//! reports API and the CSVs an evidence bundle carries.

use dsops_proto::ErrorCode;
use dsops_reports::{ComplianceReport, ReportRequest, Standard};

use super::start::{RotationError, config_at};
use crate::control::ControlPlane;

/// The report of `standard` for `env` over `from_ms..to_ms`, judged against the configuration
/// in force at the period's end (the current one when that version is no longer kept).
pub async fn report(
    control: &ControlPlane,
    standard: Standard,
    env: &str,
    from_ms: u64,
    to_ms: u64,
    sample: Option<(usize, u64)>,
) -> Result<ComplianceReport, RotationError> {
    let version = control
        .read_current(|s| {
            s.configs
                .iter()
                .rev()
                .find(|c| c.applied_at_ms < to_ms)
                .map_or(s.config_version(), |c| c.version)
        })
        .await
        .map_err(RotationError::from)?;
    if version == 0 {
        return Err(RotationError::new(
            ErrorCode::FailedPrecondition,
            "no configuration is stored yet; run `dsops apply -f dsops.yaml` first",
        ));
    }
    let (_, loaded) = config_at(control, version).await?;
    let request = ReportRequest {
        standard,
        env: env.to_owned(),
        from_ms,
        to_ms,
        now_ms: dsops_proto::now_ms(),
        sample,
    };
    control
        .read_local(|s| dsops_reports::build(&loaded, s, &request))
        .await
        .map_err(|e| RotationError::new(ErrorCode::InvalidArgument, e.to_string()))
}

/// The report tables an evidence bundle carries for `env` (every environment when empty):
/// population, rotations and exceptions, and the controls of every standard in one table.
/// Nothing before a configuration is stored.
pub async fn bundle_files(
    control: &ControlPlane,
    env: &str,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<(String, Vec<u8>)>, RotationError> {
    let version = control.read_local(|s| s.config_version()).await;
    if version == 0 {
        return Ok(Vec::new());
    }
    let envs: Vec<String> = if env.is_empty() {
        let (_, loaded) = config_at(control, version).await?;
        loaded.config.envs.keys().cloned().collect()
    } else {
        vec![env.to_owned()]
    };
    let mut files = Vec::new();
    for env in envs {
        let mut controls = String::new();
        for standard in Standard::ALL {
            let report = report(control, standard, &env, from_ms, to_ms, None).await?;
            if controls.is_empty() {
                for table in ["population", "rotations", "exceptions"] {
                    let csv = dsops_reports::csv::table(&report, table).unwrap_or_default();
                    files.push((format!("reports/{env}/{table}.csv"), csv.into_bytes()));
                }
            }
            let csv = dsops_reports::csv::table(&report, "controls").unwrap_or_default();
            // One header for the five standards' rows.
            let rows = match controls.is_empty() {
                true => &csv[..],
                false => csv.split_once("\r\n").map_or("", |(_, rest)| rest),
            };
            controls.push_str(rows);
        }
        files.push((format!("reports/{env}/controls.csv"), controls.into_bytes()));
    }
    Ok(files)
}
