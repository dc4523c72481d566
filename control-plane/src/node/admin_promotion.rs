//! The admin calls of promotion lines: their status (viewer), halt and resume (operator for
//! every environment: a line spans several).

use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;
use dsops_proto::wire::admin as wire;
use dsops_state::Command;
use tonic::{Request, Response, Status};

use super::admin_service::AdminService;

/// The longest variable or group name asked about.
const MAX_NAME: usize = 128;

impl AdminService {
    pub(super) async fn promotion_status_impl(
        &self,
        request: Request<wire::PromotionStatusRequest>,
    ) -> Result<Response<wire::PromotionStatusResponse>, Status> {
        self.authorize(&request, Permission::Read).await?;
        let wire::PromotionStatusRequest { env, key } = request.into_inner();
        if env.len() > MAX_NAME || key.len() > MAX_NAME {
            return Err(ErrorCode::InvalidArgument.to_status("env and key: at most 128 bytes each"));
        }
        let status = crate::rotation::promotion::status(&self.control, &env, &key).await?;
        Ok(Response::new(status))
    }

    /// `halt` (`resume` false) or `resume`.
    pub(super) async fn halt_impl(
        &self,
        request: Request<wire::HaltPromotionRequest>,
        resume: bool,
    ) -> Result<Response<wire::HaltPromotionResponse>, Status> {
        let caller = self.authorize(&request, Permission::Rotate { env: None }).await?;
        let wire::HaltPromotionRequest { line, all, reason, request_id } = request.into_inner();
        let request_id = dsops_proto::domain::RequestId::parse(&request_id, "request_id")?;
        if reason.trim().is_empty() || reason.len() > dsops_state::MAX_HALT_REASON {
            return Err(
                ErrorCode::InvalidArgument.to_status("reason: why, 1 to 512 bytes (--reason TEXT)")
            );
        }
        let line = match (all, line.is_empty()) {
            (true, true) => None,
            (false, false) => Some(line),
            _ => {
                return Err(ErrorCode::InvalidArgument.to_status(
                    "name one promotion line (a variable or group) or --all, not both",
                ));
            }
        };
        if let Some(name) = &line {
            // Only lines of the stored configuration: a typo must not make a new line.
            let (_, loaded) = crate::rotation::start::current_config(&self.control).await?;
            let lines = loaded.config.promotion_lines();
            if !lines.iter().any(|l| &l.name == name) {
                let names: Vec<&str> = lines.iter().map(|l| l.name.as_str()).collect();
                let hint = dsops_config::document::suggest(name, names.iter().copied())
                    .map(|h| format!("; did you mean {h:?}?"))
                    .unwrap_or_else(|| format!(" (lines: {})", names.join(", ")));
                return Err(
                    ErrorCode::NotFound.to_status(format!("no promotion line {name:?}{hint}"))
                );
            }
        }
        let command = if resume {
            Command::ResumePromotion { line, reason }
        } else {
            Command::HaltPromotion { line, reason }
        };
        let response = self
            .control
            .write(&caller.name, request_id.as_str(), command)
            .await
            .map_err(|e| e.to_status())?;
        match response.outcome {
            dsops_state::Outcome::PromotionUpdated { line } => {
                Ok(Response::new(wire::HaltPromotionResponse { line }))
            }
            other => Err(ErrorCode::Internal.to_status(format!("unexpected outcome {other:?}"))),
        }
    }
}
