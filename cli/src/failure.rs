//! How a command fails, and the exit code each failure maps to.

use dsops_config::document::Diagnostic;

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
