//! `ComplianceReport`: a compliance report as JSON (viewer); the CLI writes it in the format
//! asked for. `GetMetrics`: the node's metrics as `/metrics` serves them (viewer).

use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;
use dsops_proto::wire::admin as wire;
use dsops_reports::Standard;
use tonic::{Request, Response, Status};

use super::admin_evidence::ms;
use super::admin_service::AdminService;

/// The largest sample asked for (a larger one is the whole report).
pub const MAX_SAMPLE: u32 = 100_000;

impl AdminService {
    pub(super) async fn compliance_report_impl(
        &self,
        request: Request<wire::ComplianceReportRequest>,
    ) -> Result<Response<wire::ComplianceReportResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let wire::ComplianceReportRequest { standard, env, from, to, sample, seed } =
            request.into_inner();
        let invalid = |message: String| ErrorCode::InvalidArgument.to_status(message);
        let standard = Standard::parse(&standard).map_err(|e| invalid(format!("standard: {e}")))?;
        let (from_ms, to_ms) = (ms(from, "from")?, ms(to, "to")?);
        if sample > MAX_SAMPLE {
            return Err(invalid(format!("sample: at most {MAX_SAMPLE}")));
        }
        let sample = (sample > 0).then_some((sample as usize, seed));
        let report = crate::rotation::compliance::report(
            &self.control,
            standard,
            &env,
            from_ms,
            to_ms,
            sample,
        )
        .await
        .map_err(|e| e.to_status())?;
        let report_json = serde_json::to_vec(&report)
            .map_err(|e| ErrorCode::Internal.to_status(e.to_string()))?;
        Ok(Response::new(wire::ComplianceReportResponse { report_json }))
    }

    pub(super) async fn get_metrics_impl(
        &self,
        request: Request<wire::GetMetricsRequest>,
    ) -> Result<Response<wire::GetMetricsResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let env = request.into_inner().env;
        if env.len() > 128 {
            return Err(ErrorCode::InvalidArgument.to_status("env: at most 128 bytes"));
        }
        let envs = (!env.is_empty()).then(|| std::collections::BTreeSet::from([env]));
        let text = crate::metrics::render(&self.control, envs.as_ref()).await;
        Ok(Response::new(wire::GetMetricsResponse { text }))
    }
}
