//! The admin API's gate: only operators get their requests read.
//!
//! The admin port accepts TLS clients without a certificate, because an operator enrols without
//! one (`EnrollOperator`: the invitation is the credential). Authorization happens in each
//! handler, after tonic has decoded the request — up to [`MAX_ADMIN_MESSAGE`] bytes. Without
//! this gate, anyone who can reach the port could make a node buffer and decode a 32 MiB message
//! per stream before being told no. Here, before the body is read: a connection without an
//! operator certificate is refused at once for every method but `EnrollOperator`, whose body is
//! cut off past [`MAX_ENROLL_MESSAGE`]; another role's certificate (an agent, a peer) is
//! refused the same way its handler would refuse it.
//!
//! [`MAX_ADMIN_MESSAGE`]: dsops_proto::domain::MAX_ADMIN_MESSAGE

use std::convert::Infallible;
use std::task::{Context, Poll};

use dsops_proto::ErrorCode;
use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::NamedService;

use crate::pki::{ConnInfo, Role};

/// The one admin method a client without a certificate may call.
const ENROLL: &str = "/dsops.admin.v1.Admin/EnrollOperator";
/// The largest enrolment request read from a client without a certificate (a CSR and a token
/// take a few KiB).
pub const MAX_ENROLL_MESSAGE: usize = 64 * 1024;

/// The admin service behind the gate.
#[derive(Debug, Clone)]
pub struct OperatorsOnly<S> {
    inner: S,
}

impl<S> OperatorsOnly<S> {
    /// `inner` behind the gate.
    pub fn new(inner: S) -> OperatorsOnly<S> {
        OperatorsOnly { inner }
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
        let role = request
            .extensions()
            .get::<ConnInfo>()
            .and_then(|info| info.identity.as_ref())
            .map(|identity| identity.role);
        let refusal = match role {
            Some(Role::Operator) => None,
            _ if request.uri().path() == ENROLL => {
                let (parts, body) = request.into_parts();
                let body = Body::new(http_body_util::Limited::new(body, MAX_ENROLL_MESSAGE));
                return Box::pin(self.inner.call(http::Request::from_parts(parts, body)));
            }
            Some(role) => Some(
                ErrorCode::PermissionDenied
                    .to_status(format!("{role} certificates may not use the admin API")),
            ),
            None => Some(
                ErrorCode::Unauthenticated
                    .to_status("an operator certificate is required (see --credentials)"),
            ),
        };
        match refusal {
            // The body is dropped unread; the client is answered at once.
            Some(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
            None => Box::pin(self.inner.call(request)),
        }
    }
}
