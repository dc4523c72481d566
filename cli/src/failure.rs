//! How a command fails, and the exit code each failure maps to.

use dsops_config::document::Diagnostic;
use dsops_proto::ErrorCode;

/// A failed command.
#[derive(Debug)]
pub enum Failure {
    /// The input is invalid (exit 2): configuration, catalog or arguments.
    Invalid { diagnostics: Vec<Diagnostic>, message: Option<String> },
    /// Something went wrong while running (exit 1).
    Runtime(anyhow::Error),
}

impl Failure {
    /// An invalid-input failure with one message.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::Invalid { diagnostics: Vec::new(), message: Some(message.into()) }
    }

    /// The failure for an error status from the admin API (over the network or in process):
    /// the one mapping of error codes to exit codes. The request was wrong (invalid, unknown,
    /// exists already, not allowed now, conflicting: exit 2), or the cluster could not do it
    /// (exit 1). `server` names the node that answered, when there was a network.
    pub fn from_status(what: &str, status: &tonic::Status, server: Option<&str>) -> Failure {
        let code = ErrorCode::from_status(status);
        let message = format!("{what}: {code}: {}", status.message());
        match code {
            ErrorCode::InvalidArgument
            | ErrorCode::NotFound
            | ErrorCode::AlreadyExists
            | ErrorCode::FailedPrecondition
            | ErrorCode::Conflict => Failure::invalid(message),
            _ => match server {
                Some(server) => Failure::Runtime(anyhow::anyhow!("{message} (server {server})")),
                None => Failure::Runtime(anyhow::anyhow!(message)),
            },
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Invalid { .. } => 2,
            Failure::Runtime(_) => 1,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Runtime(error)
    }
}

impl From<Vec<Diagnostic>> for Failure {
    fn from(diagnostics: Vec<Diagnostic>) -> Failure {
        Failure::Invalid { diagnostics, message: None }
    }
}
