//! The one role check every service makes: the verified certificate of the connection a request
//! came on must be of the service's role.

use dsops_proto::ErrorCode;
use tonic::{Request, Status};

use super::{CallerIdentity, ConnInfo, Role};

/// The caller of `request` if its certificate is of `role`: `unauthenticated` (with `missing`,
/// which says how to get one) without a certificate, `permission_denied` naming the service
/// (`what`) for a certificate of another role.
pub fn caller_of<T>(
    request: &Request<T>,
    role: Role,
    what: &str,
    missing: &str,
) -> Result<CallerIdentity, Status> {
    match request.extensions().get::<ConnInfo>().and_then(|info| info.identity.clone()) {
        Some(identity) if identity.role == role => Ok(identity),
        Some(identity) => Err(ErrorCode::PermissionDenied
            .to_status(format!("{} certificates may not {what}", identity.role))),
        None => Err(ErrorCode::Unauthenticated.to_status(missing.to_owned())),
    }
}
