//! MySQL and MariaDB: `ALTER USER … IDENTIFIED BY PASSWORD '*hash'` for `mysql_native_password`
//! accounts (the password never travels in the statement), a literal escaped for the session's
//! `sql_mode` otherwise; logins checked by a fresh connection, `ACCOUNT LOCK` to retire, the
//! process list for open sessions. A user name applies to every host it is defined for.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use zeroize::Zeroizing;

use super::{
    AdapterError, DatabaseTarget, ErrorClass, Login, PasswordTarget, SecretSql, admin_connection,
    server_message, within,
};
use crate::secret::SecretValue;

/// A MySQL or MariaDB server, reached with the agent's admin credential.
#[derive(Debug, Clone)]
pub struct MySqlAdapter {
    target: DatabaseTarget,
    pool: MySqlPool,
    /// At most `max_connections` calls on the server at once (statements and fresh logins).
    slots: Arc<Semaphore>,
}

/// Quotes an identifier or account part with backticks (doubled inside): valid in every
/// `sql_mode`, unlike quotes.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn account(user: &str, host: &str) -> String {
    format!("{}@{}", quote(user), quote(host))
}

/// `mysql_native_password`'s stored form: `*` + upper-case hex of SHA1(SHA1(password)).
fn native_hash(value: &SecretValue) -> Zeroizing<String> {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    let inner = digest(&SHA1, value.expose().as_bytes());
    let outer = digest(&SHA1, inner.as_ref());
    Zeroizing::new(format!("*{}", dsops_proto::hex(outer.as_ref()).to_uppercase()))
}

/// Which server answers, from `SELECT version()`: the statements differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    /// MariaDB (any version): `IDENTIFIED BY PASSWORD '*hash'`, `max_statement_time`.
    MariaDb,
    /// MySQL `major.minor.patch`.
    MySql(u32, u32, u32),
}

impl Server {
    fn parse(version: &str) -> Server {
        if version.to_ascii_lowercase().contains("mariadb") {
            return Server::MariaDb;
        }
        let mut parts = version
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        Server::MySql(next(), next(), next())
    }

    /// The session settings under which the server cancels a statement, lock waits included,
    /// after `limit` (below the agent's own limit on the call).
    fn limits(self, limit: std::time::Duration) -> String {
        let seconds = limit.as_secs().max(1);
        match self {
            // `max_statement_time` also ends a wait for a table lock (`lock_wait_timeout` alone
            // does not: checked against MariaDB 10.11).
            Server::MariaDb => format!(
                "SET SESSION max_statement_time = {:.3}, lock_wait_timeout = {seconds}",
                limit.as_secs_f64()
            ),
            // MySQL's `max_execution_time` covers SELECTs only; account statements wait on
            // metadata locks and InnoDB rows of the grant tables.
            Server::MySql(..) => format!(
                "SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}, max_execution_time = {}",
                limit.as_millis().max(1)
            ),
        }
    }

    /// The statement that sets `account`'s password. A `mysql_native_password` account gets the
    /// hash, so the password itself is never in a statement: MariaDB and MySQL before 5.7.6 as
    /// `IDENTIFIED BY PASSWORD '*hash'`, which MySQL 8 removed, later MySQL as
    /// `IDENTIFIED WITH mysql_native_password AS '*hash'`. Other plugins get the password as a
    /// literal escaped for the session's `sql_mode` (MySQL rewrites it out of its logs).
    fn set_password(
        self,
        account: &str,
        plugin: &str,
        mode: &str,
        value: &SecretValue,
    ) -> Zeroizing<String> {
        let native = plugin.is_empty() || plugin == "mysql_native_password";
        Zeroizing::new(match self {
            _ if !native => {
                let literal = Zeroizing::new(literal(value.expose(), mode));
                format!("ALTER USER {account} IDENTIFIED BY {}", literal.as_str())
            }
            Server::MySql(major, minor, patch) if (major, minor, patch) >= (5, 7, 6) => format!(
                "ALTER USER {account} IDENTIFIED WITH mysql_native_password AS '{}'",
                native_hash(value).as_str()
            ),
            Server::MariaDb | Server::MySql(..) => format!(
                "ALTER USER {account} IDENTIFIED BY PASSWORD '{}'",
                native_hash(value).as_str()
            ),
        })
    }
}

/// A string literal for a session whose `sql_mode` is `mode`.
fn literal(text: &str, mode: &str) -> String {
    let backslash_escapes = !mode.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES");
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if backslash_escapes => out.push_str("\\\\"),
            '\0' if backslash_escapes => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// ER_ACCESS_DENIED_ERROR, ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL 3118, MariaDB 4151).
fn is_auth_refusal(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1045 | 3118 | 4151)),
        _ => false,
    }
}

static IDENTIFIED: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)\s+IDENTIFIED\s+(?:BY\s+PASSWORD\s+'[^']*'|VIA\s+\S+(?:\s+USING\s+'[^']*')?|WITH\s+\S+(?:\s+(?:AS|BY)\s+'[^']*')?)",
    )
    .expect("valid regex")
});

impl MySqlAdapter {
    /// An adapter for `target`. Connects lazily.
    pub fn new(target: DatabaseTarget) -> MySqlAdapter {
        let options = Self::options(&target, &target.admin_user, &target.admin_password);
        let pool = target.admin_pool(options);
        let slots = target.call_slots();
        MySqlAdapter { target, pool, slots }
    }

    fn options(target: &DatabaseTarget, user: &str, password: &SecretValue) -> MySqlConnectOptions {
        let options = MySqlConnectOptions::new()
            .host(&target.host)
            .port(target.port)
            .username(user)
            .password(password.expose())
            .disable_statement_logging()
            .ssl_mode(Self::ssl_mode(target.tls_mode.as_deref()));
        let options = match &target.ca_file {
            Some(file) => options.ssl_ca(file),
            None => options,
        };
        match &target.database {
            Some(database) => options.database(database),
            None => options,
        }
    }

    /// The configured `tls` mode (validated by the configuration), `preferred` when none.
    fn ssl_mode(mode: Option<&str>) -> sqlx::mysql::MySqlSslMode {
        use sqlx::mysql::MySqlSslMode;
        match mode {
            Some("disabled") => MySqlSslMode::Disabled,
            Some("required") => MySqlSslMode::Required,
            Some("verify-ca") => MySqlSslMode::VerifyCa,
            Some("verify-identity") => MySqlSslMode::VerifyIdentity,
            _ => MySqlSslMode::Preferred,
        }
    }

    fn describe(&self) -> String {
        format!("mysql {}:{}", self.target.host, self.target.port)
    }

    fn retryable(label: &str, error: impl std::fmt::Display) -> AdapterError {
        AdapterError::new(ErrorClass::Retryable, format!("{label}: {error}"))
    }

    /// Runs `statement(server, account, plugin, sql_mode)` for each host of `user`, as admin, on
    /// one connection bounded by the server's own statement limit. No host at all means the
    /// user does not exist: not applied.
    async fn for_each_account(
        &self,
        what: &str,
        user: &str,
        statement: impl Fn(Server, &str, &str, &str) -> Zeroizing<String> + Send + Sync,
    ) -> Result<(), AdapterError> {
        let label = format!("{}: {what}", self.describe());
        let _slot = self.slots.acquire().await;
        let (mut conn, left) = admin_connection(&self.pool, self.target.timeout, &label).await?;
        within(left, ErrorClass::Indeterminate, &label, async {
            let session = sqlx::query("select @@session.sql_mode, version()")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| Self::retryable(&label, e))?;
            let (mode, version): (String, String) = (session.get(0), session.get(1));
            let server = Server::parse(&version);
            sqlx::raw_sql(AssertSqlSafe(server.limits(self.target.server_limit())))
                .execute(&mut *conn)
                .await
                .map_err(|e| Self::retryable(&label, e))?;
            let rows =
                sqlx::query("select Host, plugin from mysql.user where User = ? order by Host")
                    .bind(user)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| Self::retryable(&label, e))?;
            if rows.is_empty() {
                return Err(AdapterError::new(
                    ErrorClass::NotApplied,
                    format!("{label}: no such user {user:?}"),
                ));
            }
            for (index, row) in rows.iter().enumerate() {
                let host: String = row.get(0);
                let plugin: String = row.get(1);
                let sql = SecretSql::new(statement(server, &account(user, &host), &plugin, &mode));
                match sqlx::raw_sql(sql.statement()).execute(&mut *conn).await {
                    Ok(_) => {}
                    // The first refusal changed nothing; a later one leaves earlier hosts changed.
                    Err(sqlx::Error::Database(db)) => {
                        let class = if index == 0 {
                            ErrorClass::NotApplied
                        } else {
                            ErrorClass::Indeterminate
                        };
                        return Err(AdapterError::new(
                            class,
                            format!(
                                "{label}: refused by the server: {}",
                                server_message(db.message())
                            ),
                        ));
                    }
                    Err(error) => {
                        return Err(AdapterError::new(
                            ErrorClass::Indeterminate,
                            format!("{label}: {error}"),
                        ));
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

impl PasswordTarget for MySqlAdapter {
    async fn set_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        self.for_each_account(
            &format!("set the password of user {user:?}"),
            user,
            |server, account, plugin, mode| server.set_password(account, plugin, mode, value),
        )
        .await
    }

    async fn login(&self, user: &str, value: &SecretValue) -> Result<Login, AdapterError> {
        let label = format!("{}: log in as {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            // No database: the user need not have access to the admin's.
            let options = Self::options(
                &DatabaseTarget { database: None, ..self.target.clone() },
                user,
                value,
            );
            match options.connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(Login::Accepted)
                }
                Err(error) if is_auth_refusal(&error) => Ok(Login::Refused),
                Err(error) => Err(Self::retryable(&label, error)),
            }
        })
        .await
    }

    async fn set_login_enabled(&self, user: &str, enabled: bool) -> Result<(), AdapterError> {
        let what = if enabled { "ACCOUNT UNLOCK" } else { "ACCOUNT LOCK" };
        self.for_each_account(&format!("{what} user {user:?}"), user, |_, account, _, _| {
            Zeroizing::new(format!("ALTER USER {account} {what}"))
        })
        .await
    }

    async fn open_sessions(&self, user: &str) -> Result<u64, AdapterError> {
        let label = format!("{}: count sessions of {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let row = sqlx::query(
                "select count(*) from information_schema.processlist where user = ? and id <> connection_id()",
            )
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| Self::retryable(&label, e))?;
            let count: i64 = row.get(0);
            Ok(count.max(0) as u64)
        })
        .await
    }

    async fn privileges(&self, user: &str) -> Result<Vec<String>, AdapterError> {
        let label = format!("{}: read privileges of {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let mut conn = self.pool.acquire().await.map_err(|e| Self::retryable(&label, e))?;
            let hosts = sqlx::query("select Host from mysql.user where User = ? order by Host")
                .bind(user)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| Self::retryable(&label, e))?;
            let mine = format!("{}@", quote(user));
            let mut out = Vec::new();
            for host in hosts {
                let host: String = host.get(0);
                let sql = format!("SHOW GRANTS FOR {}", account(user, &host));
                let grants = sqlx::raw_sql(AssertSqlSafe(sql))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| Self::retryable(&label, e))?;
                for grant in grants {
                    let line: String = grant.try_get(0).map_err(|e| Self::retryable(&label, e))?;
                    let line = IDENTIFIED.replace_all(&line, "").replace(&mine, "<user>@");
                    out.push(line);
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AdapterError> {
        let label = format!("{}: look up user {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let rows = sqlx::query("select 1 from mysql.user where User = ?")
                .bind(user)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| Self::retryable(&label, e))?;
            Ok(!rows.is_empty())
        })
        .await
    }

    async fn probe(&self, query: &str) -> Result<Option<String>, AdapterError> {
        let label = format!("{}: health query", self.describe());
        let _slot = self.slots.acquire().await;
        let fail =
            |e: sqlx::Error| AdapterError::new(ErrorClass::NotApplied, format!("{label}: {e}"));
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let mut conn = self.pool.acquire().await.map_err(fail)?;
            sqlx::query("start transaction read only").execute(&mut *conn).await.map_err(fail)?;
            let wrapped =
                format!("with probe(v) as ({query}) select cast(v as char) from probe limit 1");
            let row = sqlx::query(sqlx::AssertSqlSafe(wrapped)).fetch_optional(&mut *conn).await;
            let _ = sqlx::query("rollback").execute(&mut *conn).await;
            Ok(row.map_err(fail)?.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_be_broken_out_of() {
        assert_eq!(literal(r"a'b\c", ""), r"'a''b\\c'");
        assert_eq!(literal(r"a'b\c", "ANSI,NO_BACKSLASH_ESCAPES"), r"'a''b\c'");
        assert_eq!(account("we`ird", "%"), "`we``ird`@`%`");
    }

    #[test]
    fn native_hash_matches_the_server_function() {
        // Computed independently: '*' + upper hex of SHA1(SHA1("secret")) with Python's hashlib.
        assert_eq!(
            native_hash(&SecretValue::new("secret".to_owned())).as_str(),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn the_password_statement_follows_the_server_version() {
        let secret = SecretValue::new("secret".to_owned());
        let hash = "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7";
        let account = account("app", "%");
        let sql = |version: &str, plugin: &str| {
            Server::parse(version).set_password(&account, plugin, "", &secret).to_string()
        };
        let by_password = format!("ALTER USER `app`@`%` IDENTIFIED BY PASSWORD '{hash}'");
        let with_native =
            format!("ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{hash}'");
        assert_eq!(sql("10.11.19-MariaDB-0+deb12u1", "mysql_native_password"), by_password);
        assert_eq!(sql("11.4.2-MariaDB", ""), by_password);
        assert_eq!(sql("5.7.5-log", "mysql_native_password"), by_password);
        assert_eq!(sql("5.7.44", "mysql_native_password"), with_native);
        assert_eq!(sql("8.0.36", "mysql_native_password"), with_native);
        assert_eq!(sql("8.4.0", ""), with_native);
        // Other plugins: the password as a literal; never `IDENTIFIED BY PASSWORD`.
        assert_eq!(
            sql("8.0.36", "caching_sha2_password"),
            "ALTER USER `app`@`%` IDENTIFIED BY 'secret'"
        );
        assert_eq!(
            sql("10.11.2-MariaDB", "ed25519"),
            "ALTER USER `app`@`%` IDENTIFIED BY 'secret'"
        );
    }

    #[test]
    fn the_server_bounds_statements_below_the_call_limit() {
        let limit = std::time::Duration::from_millis(11_250);
        assert_eq!(
            Server::MariaDb.limits(limit),
            "SET SESSION max_statement_time = 11.250, lock_wait_timeout = 11"
        );
        assert_eq!(
            Server::MySql(8, 0, 36).limits(limit),
            "SET SESSION lock_wait_timeout = 11, innodb_lock_wait_timeout = 11, max_execution_time = 11250"
        );
    }

    #[test]
    fn grant_lines_lose_credentials_and_names() {
        let line = "GRANT USAGE ON *.* TO `app_a`@`%` IDENTIFIED BY PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'";
        let cleaned = IDENTIFIED.replace_all(line, "").replace("`app_a`@", "<user>@");
        assert_eq!(cleaned, "GRANT USAGE ON *.* TO <user>@`%`");
    }
}
