//! MySQL and MariaDB: `ALTER USER … IDENTIFIED BY PASSWORD '*hash'` for `mysql_native_password`
//! accounts (the password never travels in the statement), a literal escaped for the session's
//! `sql_mode` otherwise; logins checked by a fresh connection, `ACCOUNT LOCK` to retire, the
//! process list for open sessions. A user name applies to every host it is defined for.

use std::sync::{Arc, LazyLock};

use tokio::sync::Semaphore;

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use super::{AdapterError, DatabaseTarget, ErrorClass, Login, PasswordTarget, within};
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
fn native_hash(value: &SecretValue) -> String {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    let inner = digest(&SHA1, value.expose().as_bytes());
    let outer = digest(&SHA1, inner.as_ref());
    format!("*{}", dsops_proto::hex(outer.as_ref()).to_uppercase())
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
            .disable_statement_logging();
        match &target.database {
            Some(database) => options.database(database),
            None => options,
        }
    }

    fn describe(&self) -> String {
        format!("mysql {}:{}", self.target.host, self.target.port)
    }

    fn retryable(label: &str, error: impl std::fmt::Display) -> AdapterError {
        AdapterError::new(ErrorClass::Retryable, format!("{label}: {error}"))
    }

    /// Runs `statement(account, plugin, sql_mode)` for each host of `user`, as admin, on one
    /// connection. No host at all means the user does not exist: not applied.
    async fn for_each_account(
        &self,
        what: &str,
        user: &str,
        statement: impl Fn(&str, &str, &str) -> String + Send + Sync,
    ) -> Result<(), AdapterError> {
        let label = format!("{}: {what}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Indeterminate, &label, async {
            let mut conn = self.pool.acquire().await.map_err(|e| {
                AdapterError::new(
                    ErrorClass::Retryable,
                    format!("{label}: cannot connect as admin: {e}"),
                )
            })?;
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
            let mode: String = sqlx::query("select @@session.sql_mode")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| Self::retryable(&label, e))?
                .get(0);
            for (index, row) in rows.iter().enumerate() {
                let host: String = row.get(0);
                let plugin: String = row.get(1);
                let sql = statement(&account(user, &host), &plugin, &mode);
                match sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await {
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
                            format!("{label}: refused by the server: {}", db.message()),
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
        let hash = native_hash(value);
        self.for_each_account(
            &format!("set the password of user {user:?}"),
            user,
            |account, plugin, mode| {
                if plugin.is_empty() || plugin == "mysql_native_password" {
                    format!("ALTER USER {account} IDENTIFIED BY PASSWORD '{hash}'")
                } else {
                    format!("ALTER USER {account} IDENTIFIED BY {}", literal(value.expose(), mode))
                }
            },
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
        self.for_each_account(&format!("{what} user {user:?}"), user, |account, _, _| {
            format!("ALTER USER {account} {what}")
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
            native_hash(&SecretValue::new("secret".to_owned())),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn grant_lines_lose_credentials_and_names() {
        let line = "GRANT USAGE ON *.* TO `app_a`@`%` IDENTIFIED BY PASSWORD '*14E65567ABDB5135D0CFD9A70B3032C179A49EE7'";
        let cleaned = IDENTIFIED.replace_all(line, "").replace("`app_a`@", "<user>@");
        assert_eq!(cleaned, "GRANT USAGE ON *.* TO <user>@`%`");
    }
}
