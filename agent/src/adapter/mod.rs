//! Adapters: how the agent changes and checks credentials on a target.
//!
//! The trait is small on purpose, and every adapter passes the same conformance suite
//! (`agent/tests/t40_adapter_conformance.rs`) against a real server. Each error says whether the
//! side effect definitely did not happen, may be retried safely, or may have happened; only the
//! control plane decides what to do about the last kind.

mod mysql;
mod pg_login;
mod postgres;
mod redis;
mod scram;

use std::future::Future;
use std::time::Duration;

use tracing::Instrument as _;

use crate::secret::SecretValue;

pub use mysql::MySqlAdapter;
pub use postgres::PostgresAdapter;
pub use redis::RedisAdapter;

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
    /// The TLS mode the configuration asks for (PostgreSQL `sslmode`, MySQL `tls`); `None`: the
    /// driver's default (TLS when the server offers it).
    pub tls_mode: Option<String>,
    /// A PEM file of the CA that signs the server's certificate (instead of the web roots).
    pub ca_file: Option<std::path::PathBuf>,
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

    /// How long the server may spend on one statement (lock waits included) before it cancels
    /// it itself: three quarters of the call's limit, so the server gives up (and rolls the
    /// statement back) before the agent stops waiting and calls the outcome indeterminate. A
    /// statement blocked on a lock therefore cannot commit after dsops concluded anything about
    /// it.
    pub(crate) fn server_limit(&self) -> Duration {
        (self.timeout * 3 / 4).max(Duration::from_millis(200))
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

/// A boxed future of an adapter call.
pub type AdapterFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, AdapterError>> + Send + 'a>>;

/// The adapter of a target as the executor holds it: [`PasswordTarget`] behind a trait object,
/// so strategies work with any adapter and a new target type needs no forwarding code. Every
/// [`PasswordTarget`] is one (blanket implementation).
pub trait Target: Send + Sync + std::fmt::Debug {
    /// See [`PasswordTarget::set_password`].
    fn set_password<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, ()>;
    /// See [`PasswordTarget::login`].
    fn login<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, Login>;
    /// See [`PasswordTarget::set_login_enabled`].
    fn set_login_enabled<'a>(&'a self, user: &'a str, enabled: bool) -> AdapterFuture<'a, ()>;
    /// See [`PasswordTarget::open_sessions`].
    fn open_sessions<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, u64>;
    /// See [`PasswordTarget::privileges`].
    fn privileges<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, Vec<String>>;
    /// See [`PasswordTarget::user_exists`].
    fn user_exists<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, bool>;
    /// See [`PasswordTarget::probe`].
    fn probe<'a>(&'a self, query: &'a str) -> AdapterFuture<'a, Option<String>>;
    /// See [`PasswordTarget::add_password`].
    fn add_password<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, ()>;
    /// See [`PasswordTarget::remove_password`].
    fn remove_password<'a>(
        &'a self,
        user: &'a str,
        value: &'a SecretValue,
    ) -> AdapterFuture<'a, ()>;
    /// See [`PasswordTarget::password_count`].
    fn password_count<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, u64>;
    /// See [`PasswordTarget::sessions_older_than`].
    fn sessions_older_than<'a>(&'a self, user: &'a str, age: Duration) -> AdapterFuture<'a, u64>;
}

/// The span of one adapter call: which call and for which user, never a value or a query.
fn call_span(call: &'static str, user: &str) -> tracing::Span {
    dsops_telemetry::span(|| tracing::info_span!("adapter", call, user = %user))
}

impl<T: PasswordTarget + std::fmt::Debug> Target for T {
    fn set_password<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, ()> {
        Box::pin(
            PasswordTarget::set_password(self, user, value)
                .instrument(call_span("set_password", user)),
        )
    }
    fn login<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, Login> {
        Box::pin(PasswordTarget::login(self, user, value).instrument(call_span("login", user)))
    }
    fn set_login_enabled<'a>(&'a self, user: &'a str, enabled: bool) -> AdapterFuture<'a, ()> {
        Box::pin(
            PasswordTarget::set_login_enabled(self, user, enabled)
                .instrument(call_span("set_login_enabled", user)),
        )
    }
    fn open_sessions<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, u64> {
        Box::pin(
            PasswordTarget::open_sessions(self, user).instrument(call_span("open_sessions", user)),
        )
    }
    fn privileges<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, Vec<String>> {
        Box::pin(PasswordTarget::privileges(self, user).instrument(call_span("privileges", user)))
    }
    fn user_exists<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, bool> {
        Box::pin(PasswordTarget::user_exists(self, user).instrument(call_span("user_exists", user)))
    }
    fn probe<'a>(&'a self, query: &'a str) -> AdapterFuture<'a, Option<String>> {
        Box::pin(PasswordTarget::probe(self, query).instrument(call_span("probe", "")))
    }
    fn add_password<'a>(&'a self, user: &'a str, value: &'a SecretValue) -> AdapterFuture<'a, ()> {
        Box::pin(
            PasswordTarget::add_password(self, user, value)
                .instrument(call_span("add_password", user)),
        )
    }
    fn remove_password<'a>(
        &'a self,
        user: &'a str,
        value: &'a SecretValue,
    ) -> AdapterFuture<'a, ()> {
        Box::pin(
            PasswordTarget::remove_password(self, user, value)
                .instrument(call_span("remove_password", user)),
        )
    }
    fn password_count<'a>(&'a self, user: &'a str) -> AdapterFuture<'a, u64> {
        Box::pin(
            PasswordTarget::password_count(self, user)
                .instrument(call_span("password_count", user)),
        )
    }
    fn sessions_older_than<'a>(&'a self, user: &'a str, age: Duration) -> AdapterFuture<'a, u64> {
        Box::pin(
            PasswordTarget::sessions_older_than(self, user, age)
                .instrument(call_span("sessions_older_than", user)),
        )
    }
}

/// Opens the adapter of one service type.
pub type OpenAdapter = fn(DatabaseTarget) -> std::sync::Arc<dyn Target>;

/// The service types this agent has an adapter for, and the adapter of each: the one place a
/// new target type is registered.
pub const SERVICE_TYPES: &[(&str, OpenAdapter)] = &[
    ("postgresql", |target| std::sync::Arc::new(PostgresAdapter::new(target))),
    ("mysql", |target| std::sync::Arc::new(MySqlAdapter::new(target))),
    ("mariadb", |target| std::sync::Arc::new(MySqlAdapter::new(target))),
    ("redis", |target| std::sync::Arc::new(RedisAdapter::new(target))),
];

/// The service types whose users can hold two passwords at once (the `overlap` strategy).
pub const OVERLAP_TYPES: &[&str] = &["redis"];

/// The adapter for a service of `service_type`, or `None` if this agent has none.
pub fn open(service_type: &str, target: DatabaseTarget) -> Option<std::sync::Arc<dyn Target>> {
    SERVICE_TYPES.iter().find(|(name, _)| *name == service_type).map(|(_, open)| open(target))
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

    /// Runs `query` (one statement returning one column) as admin in a read-only transaction:
    /// the first row's value as text, `None` for no row or NULL (a promotion gate's SQL check).
    fn probe(
        &self,
        query: &str,
    ) -> impl Future<Output = Result<Option<String>, AdapterError>> + Send;

    /// Adds `value` as a further password of `user`, keeping the ones it holds (targets whose
    /// users can hold two at once: the `overlap` strategy). Idempotent. Others refuse.
    fn add_password(
        &self,
        user: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send {
        let _ = value;
        async move { Err(one_password(user)) }
    }

    /// Removes `value` from `user`'s passwords, keeping the others. Idempotent. Targets whose
    /// users hold one password refuse.
    fn remove_password(
        &self,
        user: &str,
        value: &SecretValue,
    ) -> impl Future<Output = Result<(), AdapterError>> + Send {
        let _ = value;
        async move { Err(one_password(user)) }
    }

    /// How many passwords `user` holds (1 where users hold one).
    fn password_count(&self, user: &str) -> impl Future<Output = Result<u64, AdapterError>> + Send {
        let _ = user;
        async { Ok(1) }
    }

    /// How many of `user`'s sessions are at least `age` old: those opened before a moment `age`
    /// ago. Targets that cannot tell count every open session.
    fn sessions_older_than(
        &self,
        user: &str,
        age: Duration,
    ) -> impl Future<Output = Result<u64, AdapterError>> + Send {
        let _ = age;
        self.open_sessions(user)
    }
}

/// The refusal of a second password by a target whose users hold one.
fn one_password(user: &str) -> AdapterError {
    AdapterError::new(
        ErrorClass::NotApplied,
        format!("{user:?} can hold one password only on this target (overlap needs two)"),
    )
}

/// SQL text that holds a credential (a verifier, a hash, a quoted password): handed to the
/// driver as a shared string and wiped once the driver has let go of it.
pub(crate) struct SecretSql(std::sync::Arc<str>);

impl SecretSql {
    pub(crate) fn new(text: zeroize::Zeroizing<String>) -> SecretSql {
        SecretSql(std::sync::Arc::from(text.as_str()))
    }

    /// What the driver runs.
    pub(crate) fn statement(&self) -> sqlx::AssertSqlSafe<std::sync::Arc<str>> {
        sqlx::AssertSqlSafe(self.0.clone())
    }
}

impl Drop for SecretSql {
    fn drop(&mut self) {
        if let Some(text) = std::sync::Arc::get_mut(&mut self.0) {
            zeroize::Zeroize::zeroize(text);
        }
    }
}

impl std::fmt::Debug for SecretSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSql(***)")
    }
}

/// A server's error text without what it quotes of the statement (`… near '<statement text>'`,
/// `at or near "<token>"`): a refused statement that carried a verifier or a password must not
/// carry it into a receipt.
pub(crate) fn server_message(message: &str) -> String {
    let cut = ["near '", "near \"", "at or near"]
        .iter()
        .filter_map(|marker| message.find(marker))
        .min()
        .unwrap_or(message.len());
    let kept = message[..cut].trim_end();
    if cut < message.len() { format!("{kept} (statement text omitted)") } else { kept.to_owned() }
}

/// Runs `f` with the target's timeout; a timeout is `on_timeout`.
/// An admin connection from `pool`, waiting at most `timeout`: a failure here sent nothing, so
/// it is retryable whichever limit (the pool's or this one) ends the wait. Returns the connection
/// and the time left for the statement, so connecting and running together stay within
/// `timeout`.
pub(crate) async fn admin_connection<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    timeout: Duration,
    label: &str,
) -> Result<(sqlx::pool::PoolConnection<DB>, Duration), AdapterError> {
    let started = std::time::Instant::now();
    let conn = within(timeout, ErrorClass::Retryable, label, async {
        pool.acquire().await.map_err(|e| {
            AdapterError::new(
                ErrorClass::Retryable,
                format!("{label}: cannot connect as admin: {e}"),
            )
        })
    })
    .await?;
    Ok((conn, timeout.saturating_sub(started.elapsed())))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The control plane refuses, before a run starts, the types it believes agents have no
    /// adapter for (`dsops_config::config::ADAPTER_TYPES`, `OVERLAP_TYPES`): the lists must be
    /// this registry's (`mariadb` is another name for `mysql`).
    #[test]
    fn the_control_plane_lists_these_adapters() {
        let canonical = |name: &str| {
            dsops_config::config::SERVICE_TYPE_ALIASES
                .iter()
                .find(|(short, _)| *short == name)
                .map_or(name.to_owned(), |(_, full)| (*full).to_owned())
        };
        let mut registered: Vec<String> =
            SERVICE_TYPES.iter().map(|(name, _)| canonical(name)).collect();
        registered.sort();
        registered.dedup();
        let mut known: Vec<String> =
            dsops_config::config::ADAPTER_TYPES.iter().map(|t| (*t).to_owned()).collect();
        known.sort();
        assert_eq!(registered, known);
        let mut overlap: Vec<&str> =
            OVERLAP_TYPES.iter().chain(crate::certificate::CERTIFICATE_TYPES).copied().collect();
        overlap.push("aws-iam");
        overlap.sort();
        let mut configured = dsops_config::config::OVERLAP_TYPES.to_vec();
        configured.sort();
        assert_eq!(overlap, configured);
        assert!(OVERLAP_TYPES.iter().all(|t| SERVICE_TYPES.iter().any(|(name, _)| name == t)));
    }

    #[test]
    fn server_messages_lose_the_statement_they_quote() {
        let mysql = "You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near 'PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7' x' at line 1";
        let cleaned = server_message(mysql);
        assert!(!cleaned.contains("14E655"), "{cleaned}");
        assert!(cleaned.ends_with("(statement text omitted)"), "{cleaned}");
        let postgres = "syntax error at or near \"$dsops_0011$s3cret\"";
        assert_eq!(server_message(postgres), "syntax error (statement text omitted)");
        assert_eq!(server_message("role \"x\" does not exist"), "role \"x\" does not exist");
    }
}
