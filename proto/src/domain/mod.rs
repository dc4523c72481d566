//! Strict domain types, converted from the loose wire types once, on the receiving side.
//!
//! Each conversion destructures the wire struct exhaustively, so adding a field to a `.proto`
//! file is a compile error here until the conversion decides what to do with it.

/// Generates the conversions of a domain enum that mirrors a wire enum one to one (the wire's
/// `UNSPECIFIED` is refused as missing, an unknown number as invalid).
macro_rules! mirror_wire {
    ($domain:ident, $wire:ty, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $domain {
            /// Every value, in order.
            pub const ALL: &'static [$domain] = &[$($domain::$variant),+];

            /// Converts the wire enum (an `i32` in prost).
            pub fn from_wire(value: i32, field: &str) -> Result<$domain, $crate::domain::ProtocolError> {
                match <$wire>::try_from(value) {
                    $(Ok(<$wire>::$variant) => Ok($domain::$variant),)+
                    Ok(<$wire>::Unspecified) => Err($crate::domain::ProtocolError::missing(field)),
                    Err(_) => Err($crate::domain::ProtocolError::invalid(
                        field,
                        format!(concat!("unknown ", $what, " {}"), value),
                    )),
                }
            }

            /// The wire value.
            pub fn to_wire(self) -> i32 {
                match self {
                    $($domain::$variant => <$wire>::$variant.into(),)+
                }
            }

            /// The name as printed and stored.
            pub fn name(self) -> &'static str {
                match self {
                    $($domain::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $domain {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

mod admin;
mod admin_requests;
mod approvals;
mod ids;
mod job;
pub mod names;
mod operators;
mod protocol_error;
mod receipt;
mod refs;
mod run;
mod session;
mod step;

pub use admin::{
    ApplyConfig, MAX_ADMIN_MESSAGE, MAX_APPLY_BYTES, MAX_DOCUMENT_BYTES, RotateRequest,
    RotateSelector, SecretKey,
};
pub use admin_requests::{
    CreateAgentToken, CreateJoinToken, DEFAULT_TOKEN_TTL, GetRuns, MAX_HISTORY, MAX_RUN_IDS,
    RemoveNode, RevokeAgent, Rollback, RotationHistory, RotationStatus, STATUS_PAGE_DEFAULT,
    STATUS_PAGE_MAX, TOKEN_TTL_RANGE,
};
pub use approvals::{Decide, MAX_REASON, decision_bytes};
pub use ids::{AgentId, Generation, RequestId, RunId, SegmentName};
pub use job::Job;
pub use operators::{
    DEFAULT_INVITE_TTL, DEFAULT_OPERATOR_CERT_DAYS, EnrollOperator, GrantRole, InviteOperator,
    OperatorRole, Permission, RenewOperator, RevokeOperator, RoleGrant,
};
pub use protocol_error::ProtocolError;
pub use receipt::{
    Fingerprint, MAX_DETAIL_BYTES, MAX_RECEIPT_BYTES, MAX_RENEW_AHEAD, MAX_RETRY_AFTER,
    ReceiptBody, SignatureError, SignedReceipt, truncate_detail,
};
pub use refs::{RefError, ServiceRef, StoreRef, WHOLE_VALUE_FIELD};
pub use run::{MemberRole, RunPhase, RunStatus, StepResult};
pub use session::{Capabilities, EnrollRequest, Heartbeat, Hello};
pub use step::{Step, StepOutcome};

use std::time::SystemTime;

/// Converts a required wire timestamp.
pub fn required_time(
    value: Option<prost_types::Timestamp>,
    field: &'static str,
) -> Result<SystemTime, ProtocolError> {
    let value = value.ok_or_else(|| ProtocolError::missing(field))?;
    SystemTime::try_from(value).map_err(|_| ProtocolError::invalid(field, "timestamp out of range"))
}

/// Milliseconds since the Unix epoch as a protobuf timestamp.
pub fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// Converts a time to the wire.
pub fn wire_time(value: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(value)
}
