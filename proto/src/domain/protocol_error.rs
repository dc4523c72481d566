use crate::ErrorCode;

/// A wire message that does not convert into its domain type: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message: field `{field}`: {reason}")]
pub struct ProtocolError {
    /// The field path in the message, e.g. `job.generation`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ProtocolError {
    /// A required field is absent or empty.
    pub fn missing(field: impl Into<String>) -> ProtocolError {
        ProtocolError { field: field.into(), reason: "is required".to_owned() }
    }

    /// A field has a value that is not acceptable.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ProtocolError {
        ProtocolError { field: field.into(), reason: reason.into() }
    }

    /// Prefixes the field path, for errors from a nested message.
    pub fn within(mut self, parent: &str) -> ProtocolError {
        self.field = format!("{parent}.{}", self.field);
        self
    }

    /// Every protocol error is the caller's fault.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

#[cfg(feature = "grpc")]
impl From<ProtocolError> for tonic::Status {
    fn from(error: ProtocolError) -> tonic::Status {
        error.code().to_status(error.to_string())
    }
}
