//! The reports API: HTTPS on its own port (`dsops-server run --reports-listen HOST:PORT`), for
//! auditors, GRC tools and Prometheus. Read-only.
//!
//! A caller is an operator (a certificate of the cluster's operator CA, any role) or holds a
//! report token (`Authorization: Bearer <token>`, see `dsops reports token create`), which
//! reads only the environments it names. Every error is one JSON shape,
//! `{"error": {"code": "...", "message": "..."}}`, with the code of the error table
//! (docs/errors.md) and its HTTP status. The OpenAPI 3.1 document is served at
//! `/v1/openapi.json` and kept in `docs/openapi/reports-v1.json`.

mod routes;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dsops_proto::ErrorCode;
use dsops_proto::domain::Permission;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::control::ControlPlane;
use crate::pki::{CallerIdentity, Role, ServerTls};

/// The OpenAPI document, as kept in the repository.
pub const OPENAPI: &str = include_str!("../../../docs/openapi/reports-v1.json");

/// An error, as every endpoint answers one.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    leader: Option<String>,
}

impl ApiError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), leader: None }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError {
            code: ErrorCode::from_status(&status),
            message: status.message().to_owned(),
            leader: dsops_proto::error::leader_hint(&status),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({ "code": self.code.name(), "message": self.message });
        if let Some(leader) = self.leader {
            error["leader"] = serde_json::Value::String(leader);
        }
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response =
            (status, axum::Json(serde_json::json!({ "error": error }))).into_response();
        if self.code == ErrorCode::Unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Who is calling, as the TLS handshake saw it.
#[derive(Debug, Clone)]
struct Peer(Option<CallerIdentity>);

/// What a caller may read.
#[derive(Debug, Clone)]
pub struct Access {
    /// The operator or token, for the audit of refusals.
    pub who: String,
    /// The environments it may read (`None`: every one).
    pub envs: Option<BTreeSet<String>>,
}

impl Access {
    /// Refuses an environment outside the caller's scope.
    pub fn check_env(&self, env: &str) -> Result<(), ApiError> {
        match &self.envs {
            Some(envs) if !envs.contains(env) => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                format!("{} may not read environment {env:?}", self.who),
            )),
            _ => Ok(()),
        }
    }

    /// The environment a scoped caller must name when a request may cover several.
    pub fn require_env<'a>(&self, env: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
        match (env, &self.envs) {
            (Some(env), _) => self.check_env(env).map(|()| Some(env)),
            (None, Some(_)) => {
                Err(ApiError::invalid("env: required with a token scoped to environments"))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The caller's access: its operator certificate, else its bearer token.
async fn authenticate(
    control: &ControlPlane,
    peer: &Peer,
    headers: &HeaderMap,
) -> Result<Access, ApiError> {
    let now = dsops_proto::now_ms();
    if let Some(identity) = peer.0.as_ref().filter(|i| i.role == Role::Operator) {
        if now >= identity.not_after_ms {
            return Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the operator certificate has expired",
            ));
        }
        let name = identity.name.clone();
        let issued = identity.issued_ms;
        let verdict = control
            .read_local(move |s| {
                if s.is_revoked("operator", &name, issued) {
                    return Err(format!("the certificate of operator {name} is revoked"));
                }
                s.operator_permits(&name, &Permission::Read)
            })
            .await;
        verdict.map_err(|why| ApiError::new(ErrorCode::PermissionDenied, why))?;
        return Ok(Access { who: format!("operator {}", identity.name), envs: None });
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "present an operator certificate or a report token (Authorization: Bearer <token>)",
            )
        })?;
    let refused = || {
        ApiError::new(ErrorCode::Unauthenticated, "the report token is unknown, expired or revoked")
    };
    let (id, secret) = bearer.trim().split_once('.').ok_or_else(refused)?;
    let hash = crate::node::admin_tokens::secret_hash(secret);
    let token =
        control.read_local(|s| s.report_tokens.get(id).cloned()).await.ok_or_else(refused)?;
    // Compared without an early exit, so timing does not tell how much of a guess matched.
    let matches = hash.len() == token.token_hash.len()
        && hash.bytes().zip(token.token_hash.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if !matches || !token.is_live(now) {
        return Err(refused());
    }
    let envs = (!token.envs.is_empty()).then(|| token.envs.iter().cloned().collect());
    Ok(Access { who: format!("report token {}", token.id), envs })
}

/// The routes, with the node they read.
fn router(control: ControlPlane) -> Router {
    routes::router(control)
}

/// Serves the reports API on `listener` until `shutdown`, with the node's TLS (client
/// certificates optional; an operator's is verified against the operator CA).
pub async fn serve(
    control: ControlPlane,
    tls: Arc<ServerTls>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(control);
    let mut incoming = tls.incoming(listener);
    loop {
        let next = tokio::select! {
            next = incoming.next() => next,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let Some(Ok(conn)) = next else {
            if next.is_none() {
                return;
            }
            continue;
        };
        let info = tonic::transport::server::Connected::connect_info(&conn);
        let service = app.clone().layer(axum::Extension(Peer(info.identity)));
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(service);
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service);
            if let Err(error) = served.await {
                tracing::debug!(%error, "reports API connection ended");
            }
        });
    }
}
