//! PostgreSQL: `ALTER ROLE … PASSWORD` with a SCRAM verifier computed here, logins checked by a
//! fresh connection, `NOLOGIN` to retire, `pg_stat_activity` for open sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::Semaphore;

use zeroize::Zeroizing;

use super::{
    AdapterError, DatabaseTarget, ErrorClass, Login, PasswordTarget, SecretSql, admin_connection,
    pg_login, scram, server_message, within,
};
use crate::secret::{SecretValue, random_bytes};

/// A PostgreSQL server, reached with the agent's admin credential.
#[derive(Debug, Clone)]
pub struct PostgresAdapter {
    target: DatabaseTarget,
    pool: PgPool,
    /// At most `max_connections` calls on the server at once (statements and fresh logins).
    slots: Arc<Semaphore>,
    /// The derived keys of the verifiers this adapter set, for the logins that check them.
    keys: Arc<scram::SaltedKeys>,
    /// Set once the server turned out to need the driver for logins (TLS, MD5...).
    driver_logins: Arc<AtomicBool>,
}

/// Quotes an identifier: `"` doubled, the whole wrapped in `"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A dollar-quoted literal whose tag does not occur in the text, so nothing in it can end it.
fn dollar_quote(text: &str) -> Result<Zeroizing<String>, AdapterError> {
    let random = random_bytes::<8>()
        .map_err(|_| AdapterError::new(ErrorClass::Retryable, "the system random source failed"))?;
    let tag = format!("dsops_{}", dsops_proto::hex(&random));
    if text.contains(&tag) {
        return Err(AdapterError::new(ErrorClass::NotApplied, "cannot quote the value"));
    }
    Ok(Zeroizing::new(format!("${tag}${text}${tag}$")))
}

/// Whether a login failure means "this credential was refused" (as opposed to "could not ask").
fn is_auth_refusal(error: &sqlx::Error) -> bool {
    match error {
        // 28P01 invalid_password, 28000 invalid_authorization_specification (no such role, or
        // pg_hba rejects it), 42704 undefined_object.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("28P01" | "28000")),
        _ => false,
    }
}

impl PostgresAdapter {
    /// An adapter for `target`. Connects lazily.
    pub fn new(target: DatabaseTarget) -> PostgresAdapter {
        let options = Self::options(&target, &target.admin_user, &target.admin_password);
        let pool = target.admin_pool(options);
        let slots = target.call_slots();
        PostgresAdapter { target, pool, slots, keys: Arc::default(), driver_logins: Arc::default() }
    }

    fn options(target: &DatabaseTarget, user: &str, password: &SecretValue) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .host(&target.host)
            .port(target.port)
            .username(user)
            .password(password.expose())
            .database(target.database.as_deref().unwrap_or("postgres"))
            .application_name("dsops-agent")
            .disable_statement_logging()
            // The server cancels a statement (or a lock wait) before the agent gives up on it.
            .options(Self::limits(target.server_limit()))
            .ssl_mode(Self::ssl_mode(target.tls_mode.as_deref()));
        match &target.ca_file {
            Some(file) => options.ssl_root_cert(file),
            None => options,
        }
    }

    /// The configured `sslmode` (validated by the configuration), `prefer` when none.
    fn ssl_mode(mode: Option<&str>) -> sqlx::postgres::PgSslMode {
        use sqlx::postgres::PgSslMode;
        match mode {
            Some("disable") => PgSslMode::Disable,
            Some("require") => PgSslMode::Require,
            Some("verify-ca") => PgSslMode::VerifyCa,
            Some("verify-full") => PgSslMode::VerifyFull,
            _ => PgSslMode::Prefer,
        }
    }

    /// The session settings that bound each statement on the server.
    fn limits(limit: std::time::Duration) -> [(&'static str, String); 2] {
        let ms = limit.as_millis().max(1);
        [("statement_timeout", format!("{ms}ms")), ("lock_timeout", format!("{ms}ms"))]
    }

    fn describe(&self) -> String {
        format!("postgresql {}:{}", self.target.host, self.target.port)
    }

    /// Runs one statement as admin. Failing to get a connection is retryable; the server
    /// refusing the statement means it did not happen; anything else after sending it is
    /// indeterminate.
    async fn execute(&self, what: &str, sql: Zeroizing<String>) -> Result<(), AdapterError> {
        let sql = SecretSql::new(sql);
        let label = format!("{}: {what}", self.describe());
        let _slot = self.slots.acquire().await;
        let (mut conn, left) = admin_connection(&self.pool, self.target.timeout, &label).await?;
        within(left, ErrorClass::Indeterminate, &label, async {
            match sqlx::raw_sql(sql.statement()).execute(&mut *conn).await {
                Ok(_) => Ok(()),
                // Refused, or cancelled by the server's own limit: rolled back, not applied.
                Err(sqlx::Error::Database(db)) => Err(AdapterError::new(
                    ErrorClass::NotApplied,
                    format!("{label}: refused by the server: {}", server_message(db.message())),
                )),
                Err(error) => {
                    Err(AdapterError::new(ErrorClass::Indeterminate, format!("{label}: {error}")))
                }
            }
        })
        .await
    }

    async fn query_rows(
        &self,
        what: &str,
        sql: &'static str,
        user: &str,
    ) -> Result<Vec<sqlx::postgres::PgRow>, AdapterError> {
        let label = format!("{}: {what}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            sqlx::query(sql)
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| AdapterError::new(ErrorClass::Retryable, format!("{label}: {e}")))
        })
        .await
    }
}

const PRIVILEGES: &str = "
    with r as (select * from pg_roles where rolname = $1)
    select 'attributes:' || concat_ws(',', rolsuper, rolinherit, rolcreaterole, rolcreatedb,
           rolreplication, rolbypassrls, rolconnlimit) from r
    union all
    select 'member-of:' || g.rolname from pg_auth_members m
      join r on m.member = r.oid join pg_roles g on g.oid = m.roleid
    union all
    select 'database:' || d.datname || ':' || a.privilege_type
      from pg_database d, aclexplode(d.datacl) a, r where a.grantee = r.oid
    union all
    select 'schema:' || n.nspname || ':' || a.privilege_type
      from pg_namespace n, aclexplode(n.nspacl) a, r where a.grantee = r.oid
    union all
    select 'relation:' || n.nspname || '.' || c.relname || ':' || a.privilege_type
      from pg_class c join pg_namespace n on n.oid = c.relnamespace, aclexplode(c.relacl) a, r
      where a.grantee = r.oid
    union all
    select 'default:' || n.nspname || ':' || d.defaclobjtype::text || ':' || a.privilege_type
      from pg_default_acl d left join pg_namespace n on n.oid = d.defaclnamespace,
           aclexplode(d.defaclacl) a, r
      where a.grantee = r.oid";

impl PasswordTarget for PostgresAdapter {
    async fn set_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        let literal = if scram::supported(value) {
            let verifier = Zeroizing::new(scram::verifier(value, &self.keys).map_err(|_| {
                AdapterError::new(ErrorClass::Retryable, "the system random source failed")
            })?);
            Zeroizing::new(format!("'{}'", verifier.as_str()))
        } else {
            dollar_quote(value.expose())?
        };
        let sql = Zeroizing::new(format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            quote_ident(user),
            literal.as_str()
        ));
        self.execute(&format!("set the password of role {user:?}"), sql).await
    }

    async fn login(&self, user: &str, value: &SecretValue) -> Result<Login, AdapterError> {
        let label = format!("{}: log in as {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            if !self.driver_logins.load(Ordering::Relaxed) {
                match pg_login::login(&self.target, user, value, &self.keys).await {
                    Ok(pg_login::Exchange::Done(login)) => return Ok(login),
                    Ok(pg_login::Exchange::UseDriver { server }) => {
                        if server {
                            self.driver_logins.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(error) => {
                        return Err(AdapterError::new(
                            ErrorClass::Retryable,
                            format!("{label}: {error}"),
                        ));
                    }
                }
            }
            let options = Self::options(&self.target, user, value);
            match options.connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(Login::Accepted)
                }
                Err(error) if is_auth_refusal(&error) => Ok(Login::Refused),
                Err(error) => {
                    Err(AdapterError::new(ErrorClass::Retryable, format!("{label}: {error}")))
                }
            }
        })
        .await
    }

    async fn set_login_enabled(&self, user: &str, enabled: bool) -> Result<(), AdapterError> {
        let what = if enabled { "LOGIN" } else { "NOLOGIN" };
        let sql = Zeroizing::new(format!("ALTER ROLE {} WITH {what}", quote_ident(user)));
        self.execute(&format!("set {what} on role {user:?}"), sql).await
    }

    async fn open_sessions(&self, user: &str) -> Result<u64, AdapterError> {
        let rows = self
            .query_rows(
                "count sessions",
                "select count(*) from pg_stat_activity where usename = $1 and pid <> pg_backend_pid()",
                user,
            )
            .await?;
        let count: i64 = rows.first().map(|row| row.get(0)).unwrap_or(0);
        Ok(count.max(0) as u64)
    }

    async fn privileges(&self, user: &str) -> Result<Vec<String>, AdapterError> {
        let rows = self.query_rows("read privileges", PRIVILEGES, user).await?;
        let mut out: Vec<String> = rows.iter().map(|row| row.get::<String, _>(0)).collect();
        out.sort();
        Ok(out)
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AdapterError> {
        let rows = self
            .query_rows("look up role", "select 1 from pg_roles where rolname = $1", user)
            .await?;
        Ok(!rows.is_empty())
    }

    async fn probe(&self, query: &str) -> Result<Option<String>, AdapterError> {
        let label = format!("{}: health query", self.describe());
        let _slot = self.slots.acquire().await;
        let fail =
            |e: sqlx::Error| AdapterError::new(ErrorClass::NotApplied, format!("{label}: {e}"));
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let mut tx = self.pool.begin().await.map_err(fail)?;
            sqlx::query("set transaction read only").execute(&mut *tx).await.map_err(fail)?;
            let wrapped =
                format!("with probe(v) as ({query}) select cast(v as text) from probe limit 1");
            let row = sqlx::query(sqlx::AssertSqlSafe(wrapped))
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
            tx.rollback().await.map_err(fail)?;
            Ok(row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_bounded_on_the_server_below_the_call_limit() {
        let limits = PostgresAdapter::limits(std::time::Duration::from_secs(15) * 3 / 4);
        assert_eq!(
            limits,
            [("statement_timeout", "11250ms".to_owned()), ("lock_timeout", "11250ms".to_owned())]
        );
    }
}
