//! The one table of dsops error codes.
//!
//! Every error that crosses a process boundary carries one of these codes. The table below is the
//! only place that decides which gRPC status code and which HTTP status a code maps to, and what
//! its stable string name is (used in the `dsops-error-code` gRPC metadata, in JSON error bodies
//! and in the CLI's `--output json`).

use std::fmt;

/// The gRPC metadata key carrying an [`ErrorCode`] name.
pub const ERROR_CODE_METADATA: &str = "dsops-error-code";
/// The gRPC metadata key carrying the leader's address on a `not_leader` error.
pub const LEADER_METADATA: &str = "dsops-leader";

/// A stable, machine-readable error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A request, message or file is malformed or fails validation.
    InvalidArgument,
    /// The named thing (secret, run, agent, node) does not exist.
    NotFound,
    /// The thing being created exists already.
    AlreadyExists,
    /// The caller presented no valid credential.
    Unauthenticated,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// The system is not in a state where this is allowed (e.g. a run is already in flight).
    FailedPrecondition,
    /// A result for an older generation, or an expected version that no longer matches.
    Conflict,
    /// This node is not the leader; retry at the leader with the same request id.
    NotLeader,
    /// The service cannot answer now (no leader, shutting down); retry later.
    Unavailable,
    /// The operation did not finish in time; its effect is unknown.
    DeadlineExceeded,
    /// A limit was reached (concurrency, rate); retry later.
    ResourceExhausted,
    /// A bug or an unexpected condition on the server.
    Internal,
}

/// gRPC status code numbers (the values of `tonic::Code`), so the table needs no gRPC runtime.
mod grpc {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const FAILED_PRECONDITION: i32 = 9;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// One row of the table: code, stable name, gRPC status code, HTTP status.
struct Row {
    code: ErrorCode,
    name: &'static str,
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    grpc: i32,
    http: u16,
}

const TABLE: [Row; 12] = [
    Row {
        code: ErrorCode::InvalidArgument,
        name: "invalid_argument",
        grpc: grpc::INVALID_ARGUMENT,
        http: 400,
    },
    Row { code: ErrorCode::NotFound, name: "not_found", grpc: grpc::NOT_FOUND, http: 404 },
    Row {
        code: ErrorCode::AlreadyExists,
        name: "already_exists",
        grpc: grpc::ALREADY_EXISTS,
        http: 409,
    },
    Row {
        code: ErrorCode::Unauthenticated,
        name: "unauthenticated",
        grpc: grpc::UNAUTHENTICATED,
        http: 401,
    },
    Row {
        code: ErrorCode::PermissionDenied,
        name: "permission_denied",
        grpc: grpc::PERMISSION_DENIED,
        http: 403,
    },
    Row {
        code: ErrorCode::FailedPrecondition,
        name: "failed_precondition",
        grpc: grpc::FAILED_PRECONDITION,
        http: 412,
    },
    Row { code: ErrorCode::Conflict, name: "conflict", grpc: grpc::ABORTED, http: 409 },
    Row { code: ErrorCode::NotLeader, name: "not_leader", grpc: grpc::UNAVAILABLE, http: 421 },
    Row { code: ErrorCode::Unavailable, name: "unavailable", grpc: grpc::UNAVAILABLE, http: 503 },
    Row {
        code: ErrorCode::DeadlineExceeded,
        name: "deadline_exceeded",
        grpc: grpc::DEADLINE_EXCEEDED,
        http: 504,
    },
    Row {
        code: ErrorCode::ResourceExhausted,
        name: "resource_exhausted",
        grpc: grpc::RESOURCE_EXHAUSTED,
        http: 429,
    },
    Row { code: ErrorCode::Internal, name: "internal", grpc: grpc::INTERNAL, http: 500 },
];

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::FailedPrecondition,
        ErrorCode::Conflict,
        ErrorCode::NotLeader,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::ResourceExhausted,
        ErrorCode::Internal,
    ];

    fn row(self) -> &'static Row {
        TABLE
            .iter()
            .find(|row| row.code == self)
            .expect("every ErrorCode has a row in TABLE (checked by a test)")
    }

    /// The stable name, e.g. `invalid_argument`.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The gRPC status code this maps to.
    #[cfg(feature = "grpc")]
    pub fn grpc_code(self) -> tonic::Code {
        tonic::Code::from_i32(self.row().grpc)
    }

    /// The HTTP status this maps to (reports API).
    pub fn http_status(self) -> u16 {
        self.row().http
    }

    /// Looks a code up by its stable name.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        TABLE.iter().find(|row| row.name == name).map(|row| row.code)
    }

    /// Whether a client may retry the same request (with the same request id).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::Unavailable
                | ErrorCode::ResourceExhausted
                | ErrorCode::DeadlineExceeded
        )
    }

    /// Builds the gRPC status for this code, with the code's name in the metadata so the client
    /// can tell `not_leader` from a plain `unavailable`.
    #[cfg(feature = "grpc")]
    pub fn to_status(self, message: impl Into<String>) -> tonic::Status {
        let mut status = tonic::Status::new(self.grpc_code(), message);
        status
            .metadata_mut()
            .insert(ERROR_CODE_METADATA, tonic::metadata::MetadataValue::from_static(self.name()));
        status
    }

    /// Recovers the code from a status: from the metadata when a dsops server sent it, otherwise
    /// from the gRPC code alone (a status from a proxy or the transport).
    #[cfg(feature = "grpc")]
    pub fn from_status(status: &tonic::Status) -> ErrorCode {
        let named = status
            .metadata()
            .get(ERROR_CODE_METADATA)
            .and_then(|value| value.to_str().ok())
            .and_then(ErrorCode::from_name);
        named.unwrap_or_else(|| ErrorCode::from_grpc_code(status.code()))
    }

    /// The closest code for a bare gRPC status code.
    #[cfg(feature = "grpc")]
    pub fn from_grpc_code(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => ErrorCode::InvalidArgument,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::AlreadyExists => ErrorCode::AlreadyExists,
            tonic::Code::Unauthenticated => ErrorCode::Unauthenticated,
            tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
            tonic::Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            tonic::Code::Aborted => ErrorCode::Conflict,
            tonic::Code::Unavailable => ErrorCode::Unavailable,
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ErrorCode::DeadlineExceeded,
            tonic::Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            _ => ErrorCode::Internal,
        }
    }
}

/// An error code is stored and logged by its stable name; reading an unknown name is an error,
/// never a silent mapping to another code.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ErrorCode::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = TABLE.iter().map(|row| row.name).collect();
            serde::de::Error::custom(format!(
                "unknown error code {name:?} (expected one of: {})",
                names.join(", ")
            ))
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds the `not_leader` status a follower answers with, carrying the leader's address (if
/// known) in the [`LEADER_METADATA`] metadata.
#[cfg(feature = "grpc")]
pub fn not_leader_status(leader_address: Option<&str>) -> tonic::Status {
    let message = match leader_address {
        Some(address) => format!("not the leader; the leader is at {address}"),
        None => "not the leader, and no leader is known yet".to_owned(),
    };
    let mut status = ErrorCode::NotLeader.to_status(message);
    if let Some(value) =
        leader_address.and_then(|a| tonic::metadata::MetadataValue::try_from(a).ok())
    {
        status.metadata_mut().insert(LEADER_METADATA, value);
    }
    status
}

/// The leader's address from a `not_leader` status, if it carries one.
#[cfg(feature = "grpc")]
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    status.metadata().get(LEADER_METADATA).and_then(|value| value.to_str().ok()).map(str::to_owned)
}

#[cfg(all(test, feature = "grpc"))]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_exactly_one_row_and_unique_name() {
        for code in ErrorCode::ALL {
            assert_eq!(TABLE.iter().filter(|row| row.code == code).count(), 1, "{code:?}");
        }
        let mut names: Vec<_> = TABLE.iter().map(|row| row.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn status_round_trip_keeps_the_code() {
        for code in ErrorCode::ALL {
            let status = code.to_status("x");
            assert_eq!(status.code(), code.grpc_code());
            assert_eq!(ErrorCode::from_status(&status), code);
            assert_eq!(ErrorCode::from_name(code.name()), Some(code));
        }
    }

    #[test]
    fn table_grpc_numbers_are_the_grpc_codes_they_name() {
        for code in ErrorCode::ALL.into_iter().filter(|code| *code != ErrorCode::NotLeader) {
            assert_eq!(ErrorCode::from_grpc_code(code.grpc_code()), code, "{code}");
        }
        assert_eq!(ErrorCode::NotLeader.grpc_code(), tonic::Code::Unavailable);
    }

    #[test]
    fn not_leader_is_distinguished_from_unavailable_and_carries_the_leader() {
        let status = not_leader_status(Some("10.0.0.7:7400"));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(ErrorCode::from_status(&status), ErrorCode::NotLeader);
        assert_eq!(leader_hint(&status).as_deref(), Some("10.0.0.7:7400"));
        let bare = tonic::Status::unavailable("down");
        assert_eq!(ErrorCode::from_status(&bare), ErrorCode::Unavailable);
        assert_eq!(leader_hint(&bare), None);
    }

    #[test]
    fn codes_serialize_by_name_and_unknown_names_are_refused() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.name()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let error = serde_json::from_str::<ErrorCode>("\"teapot\"").unwrap_err().to_string();
        assert!(error.contains("unknown error code \"teapot\""), "{error}");
    }

    #[test]
    fn http_statuses_are_client_or_server_errors() {
        for code in ErrorCode::ALL {
            let http = code.http_status();
            assert!((400..600).contains(&http), "{code}: {http}");
        }
        assert_eq!(ErrorCode::Internal.http_status(), 500);
        assert_eq!(ErrorCode::InvalidArgument.http_status(), 400);
    }

    #[test]
    fn the_documented_table_matches_the_code() {
        let page = include_str!("../../docs/errors.md");
        for code in ErrorCode::ALL {
            let row = format!(
                "| `{}` | {} | {} |",
                code.name(),
                code.http_status(),
                match code.is_retryable() {
                    true => "yes",
                    false => "no",
                }
            );
            assert!(page.contains(&row), "docs/errors.md has no row starting {row}");
        }
    }
}
