//! Adapters: how the agent changes and checks credentials on a target.
//!
//! The trait is small on purpose, and every adapter passes the same conformance suite
//! (`agent/tests/t40_adapter_conformance.rs`) against a real server. Each error says whether the
//! side effect definitely did not happen, may be retried safely, or may have happened; only the
//! control plane decides what to do about the last kind.

mod mysql;
mod postgres;
mod scram;

use std::future::Future;
use std::time::Duration;

use crate::secret::SecretValue;

pub use mysql::MySqlAdapter;
pub use postgres::PostgresAdapter;

/// What a failure means for the side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The target refused the change; nothing happened.
    NotApplied,
    /// Nothing happened yet (e.g. could not connect); retrying as is is safe.
    Retryable,
    /// The change may or may not have happened (e.g. the connection broke after the statement
    /// was sent). Resolve by checking.
    Indeterminate,
}

/// A failed adapter call. The message names the target and the operation, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdapterError {
    /// What the failure means for the side effect.
    pub class: ErrorClass,
    /// What went wrong.
    pub message: String,
}

impl AdapterError {
    pub(crate) fn new(class: ErrorClass, message: impl Into<String>) -> AdapterError {
        AdapterError { class, message: message.into() }
    }
}

/// Where a database is and how the agent logs in to it as admin.
#[derive(Debug, Clone)]
pub struct DatabaseTarget {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The database to connect to (PostgreSQL: required by the protocol; MySQL: optional).
    pub database: Option<String>,
    /// The admin user.
    pub admin_user: String,
    /// The admin password, read from the agent's own store.
    pub admin_password: SecretValue,
    /// Limit on each call (connect + statement).
    pub timeout: Duration,
    /// Admin connections kept open at most.
    pub max_connections: u32,
}

impl DatabaseTarget {
    /// The admin pool for this target: at most `max_connections`, connected lazily.
    pub(crate) fn admin_pool<DB: sqlx::Database>(
        &self,
        options: <DB::Connection as sqlx::Connection>::Options,
    ) -> sqlx::Pool<DB> {
        sqlx::pool::PoolOptions::<DB>::new()
            .max_connections(self.max_connections.max(1))
            .acquire_timeout(self.timeout)
            .connect_lazy_with(options)
    }

    /// The limit on calls at once on this target (statements and fresh logins).
    pub(crate) fn call_slots(&self) -> std::sync::Arc<tokio::sync::Semaphore> {
        std::sync::Arc::new(tokio::sync::Semaphore::new(self.max_connections.max(1) as usize))
    }
}

/// What a login attempt showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The credential works.
    Accepted,
    /// The server refused the credential (wrong password, login disabled, no such user).
    Refused,
}

/// A target whose users log in with passwords (databases).
pub trait PasswordTarget: Send + Sync {
    /// Sets `user`'s password to `value`. Idempotent.
    fn set_password(
        &self,
        user: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// Tries a fresh login as `user` with `value` and nothing else.
    fn login(
        &self,
        user: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<Login, AdapterError>> + Send;

    /// Allows or forbids `user` to log in. Idempotent.
    fn set_login_enabled(
        &self,
        user: &str,
        enabled: bool,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send;

    /// How many sessions `user` has open now.
    fn open_sessions(&self, user: &str) -> impl Future<Output = Result<u64, AdapterError>> + Send;

    /// `user`'s privileges, normalised so that two users with the same grants give equal lists
    /// (the user's own name replaced by `<user>`), sorted.
    fn privileges(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Vec<String>, AdapterError>> + Send;

    /// Whether `user` exists.
    fn user_exists(&self, user: &str) -> impl Future<Output = Result<bool, AdapterError>> + Send;
}

/// Runs `f` with the target's timeout; a timeout is `on_timeout`.
pub(crate) async fn within<T>(
    timeout: Duration,
    on_timeout: ErrorClass,
    what: &str,
    f: impl Future<Output = Result<T, AdapterError>>,
) -> Result<T, AdapterError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(result) => result,
        Err(_) => {
            Err(AdapterError::new(on_timeout, format!("{what}: timed out after {timeout:?}")))
        }
    }
}
