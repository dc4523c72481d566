//! The admin API's gate: only operators get their requests read.
//!
//! The admin port accepts TLS clients without a certificate, because an operator enrols without
//! one (`EnrollOperator`: the invitation is the credential). Authorization happens in each
//! handler, after tonic has decoded the request — up to [`MAX_ADMIN_MESSAGE`] bytes. Without
//! this gate, anyone who can reach the port could make a node buffer and decode a 32 MiB message
//! per stream before being told no. Here, before the body is read: a connection without an
//! operator certificate is refused at once for every method but `EnrollOperator`, whose body is
//! cut off past [`MAX_ENROLL_MESSAGE`]; another role's certificate (an agent, a peer), and an
//! operator certificate that has expired or is revoked (a stolen one, say), are refused the way
//! the handler would refuse them ([`operator_refusal`], which the handlers use too).
//!
//! [`MAX_ADMIN_MESSAGE`]: dsops_proto::domain::MAX_ADMIN_MESSAGE

use std::convert::Infallible;
use std::task::{Context, Poll};

use dsops_proto::ErrorCode;
use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::control::ControlPlane;
use crate::pki::{CallerIdentity, ConnInfo, Role};

/// The one admin method a client without a certificate may call.
const ENROLL: &str = "/dsops.admin.v1.Admin/EnrollOperator";
/// The largest enrolment request read from a client without a certificate (a CSR and a token
/// take a few KiB).
pub const MAX_ENROLL_MESSAGE: usize = 64 * 1024;

/// Why an operator certificate may no longer be used: expired (an HTTP/2 connection outlives
/// the handshake that checked it) or revoked. `None`: it may.
pub(super) async fn operator_refusal(
    control: &ControlPlane,
    identity: &CallerIdentity,
) -> Option<tonic::Status> {
    if dsops_proto::now_ms() >= identity.not_after_ms {
        return Some(ErrorCode::Unauthenticated.to_status(format!(
            "the certificate of operator {} has expired; reconnect with a current one",
            identity.name
        )));
    }
    let revoked =
        control.read_local(|s| s.is_revoked("operator", &identity.name, identity.issued_ms)).await;
    revoked.then(|| {
        ErrorCode::PermissionDenied
            .to_status(format!("the certificate of operator {} is revoked", identity.name))
    })
}

/// The admin service behind the gate.
#[derive(Debug, Clone)]
pub struct OperatorsOnly<S> {
    inner: S,
    control: ControlPlane,
}

impl<S> OperatorsOnly<S> {
    /// `inner` behind the gate of `control`'s node.
    pub fn new(inner: S, control: ControlPlane) -> OperatorsOnly<S> {
        OperatorsOnly { inner, control }
    }
}

impl<S: NamedService> NamedService for OperatorsOnly<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for OperatorsOnly<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service that was polled ready serves this request; a clone stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let identity =
            request.extensions().get::<ConnInfo>().and_then(|info| info.identity.clone());
        let refusal = match identity {
            Some(identity) if identity.role == Role::Operator => {
                let control = self.control.clone();
                return Box::pin(async move {
                    match operator_refusal(&control, &identity).await {
                        // The body is dropped unread.
                        Some(status) => Ok(status.into_http()),
                        None => inner.call(request).await,
                    }
                });
            }
            _ if request.uri().path() == ENROLL => {
                let (parts, body) = request.into_parts();
                let body = Body::new(http_body_util::Limited::new(body, MAX_ENROLL_MESSAGE));
                return Box::pin(inner.call(http::Request::from_parts(parts, body)));
            }
            Some(identity) => ErrorCode::PermissionDenied
                .to_status(format!("{} certificates may not use the admin API", identity.role)),
            None => ErrorCode::Unauthenticated
                .to_status("an operator certificate is required (see --credentials)"),
        };
        // The body is dropped unread; the client is answered at once.
        Box::pin(std::future::ready(Ok(refusal.into_http())))
    }
}
