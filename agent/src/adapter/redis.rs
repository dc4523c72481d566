//! Redis ACL users (Redis 6 and later). A password is set as its SHA-256 (`ACL SETUSER <user>
//! resetpass #<hash>`), so the password itself never travels in a command and never reaches the
//! server's logs; a login is a fresh connection's `AUTH <user> <password>`; `off` retires a user;
//! `CLIENT LIST` shows open sessions and how old they are. A Redis user can hold several
//! passwords at once, which the `overlap` strategy uses: add the new one (`#<hash>`), later
//! remove the old one (`!<hash>`).
//!
//! With `tls: true` the agent connects over TLS (rustls), trusting the service's `ca_file` or
//! the system's roots.
//!
//! `ACL SETUSER` creates a user that does not exist, so every change first checks that the user
//! is there: dsops never creates a Redis user.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use redis::{RedisConnectionInfo, RedisError, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};

use super::{AdapterError, DatabaseTarget, ErrorClass, Login, PasswordTarget, within};
use crate::secret::SecretValue;

/// A Redis server, reached with the agent's admin credential (`default` when the admin entry
/// names no user, as with `requirepass`).
#[derive(Debug)]
pub struct RedisAdapter {
    target: DatabaseTarget,
    /// The admin connection, opened on first use and dropped after an I/O failure.
    admin: Mutex<Option<MultiplexedConnection>>,
    /// At most `max_connections` calls on the server at once (commands and fresh logins).
    slots: Arc<Semaphore>,
}

/// The form `ACL SETUSER` takes a password in: lower-case hex of its SHA-256.
fn password_hash(value: &SecretValue) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(dsops_proto::hex(&Sha256::digest(value.expose().as_bytes())))
}

/// A server error's text without anything it quotes: Redis quotes the rule it refused, which
/// may be a password hash.
fn server_text(error: &RedisError) -> String {
    let text = match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => error.to_string(),
    };
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '\'' {
            if !quoted {
                out.push_str("'…'");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// The text of a reply (status, bulk string, number); `None` for nil.
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Nil => None,
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Double(d) => Some(d.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            Some(items.iter().filter_map(text_of).collect::<Vec<_>>().join(" "))
        }
        _ => None,
    }
}

/// The key/value pairs of a map reply (RESP2 gives a flat array, RESP3 a map).
fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(items) => items.iter().filter_map(|(k, v)| text_of(k).map(|k| (k, v))).collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [k, v] => text_of(k).map(|k| (k, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The items of an array or set reply.
fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// A user's rules from `ACL GETUSER`, without its passwords and its on/off state: two users with
/// the same rules give the same lines.
fn rules(user: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in pairs(user) {
        match key.as_str() {
            "passwords" => {}
            "flags" => {
                let flags: Vec<String> = items(value)
                    .iter()
                    .filter_map(text_of)
                    .filter(|f| !matches!(f.as_str(), "on" | "off" | "nopass"))
                    .collect();
                out.push(format!("flags {}", flags.join(" ")));
            }
            "selectors" => {
                for selector in items(value) {
                    let parts: Vec<String> = pairs(selector)
                        .into_iter()
                        .map(|(k, v)| format!("{k} {}", text_of(v).unwrap_or_default()))
                        .collect();
                    out.push(format!("selector ({})", parts.join(", ")));
                }
            }
            _ => out.push(format!("{key} {}", text_of(value).unwrap_or_default())),
        }
    }
    out.sort();
    out
}

/// One `CLIENT LIST` line's fields.
fn client_fields(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split(' ').filter_map(|field| field.split_once('='))
}

/// The connections of `user` in a `CLIENT LIST` reply, except `own_id`, at least `min_age`
/// seconds old.
fn count_clients(list: &str, user: &str, own_id: i64, min_age: u64) -> u64 {
    list.lines()
        .filter(|line| {
            let (mut id, mut name, mut age) = (None, None, 0u64);
            for (key, value) in client_fields(line) {
                match key {
                    "id" => id = value.parse::<i64>().ok(),
                    "user" => name = Some(value),
                    "age" => age = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
            name == Some(user) && id != Some(own_id) && age >= min_age
        })
        .count() as u64
}

impl RedisAdapter {
    /// An adapter for `target`. Connects lazily.
    pub fn new(target: DatabaseTarget) -> RedisAdapter {
        let slots = target.call_slots();
        RedisAdapter { target, admin: Mutex::new(None), slots }
    }

    fn describe(&self) -> String {
        format!("redis {}:{}", self.target.host, self.target.port)
    }

    /// The connection settings, logging in as `user` with `password` (no login with `None`);
    /// over TLS when the service says `tls: true`.
    fn info(&self, login: Option<(&str, &SecretValue)>) -> Result<ConnectionInfo, RedisError> {
        let (host, port) = (self.target.host.clone(), self.target.port);
        let address = if self.target.tls_mode.is_some() {
            ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None }
        } else {
            ConnectionAddr::Tcp(host, port)
        };
        let mut settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if let Some((user, password)) = login {
            if !user.is_empty() {
                settings = settings.set_username(user);
            }
            settings = settings.set_password(password.expose());
        }
        Ok(address.into_connection_info()?.set_redis_settings(settings))
    }

    async fn connect(
        &self,
        login: Option<(&str, &SecretValue)>,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let info = self.info(login)?;
        let client = match (&self.target.tls_mode, &self.target.ca_file) {
            (Some(_), Some(file)) => {
                // The crate's TLS takes the process's rustls provider.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let root = std::fs::read(file).map_err(|e| {
                    RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "cannot read ca_file",
                        format!("{}: {e}", file.display()),
                    ))
                })?;
                let certificates =
                    redis::TlsCertificates { client_tls: None, root_cert: Some(root) };
                Client::build_with_tls(info, certificates)?
            }
            (Some(_), None) => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                Client::open(info)?
            }
            (None, _) => Client::open(info)?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// The admin connection (opened if there is none): failing here sent nothing, so it is
    /// retryable.
    async fn admin(&self, label: &str) -> Result<MultiplexedConnection, AdapterError> {
        let mut cached = self.admin.lock().await;
        if let Some(conn) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let login = (self.target.admin_user.as_str(), &self.target.admin_password);
        let conn = self.connect(Some(login), self.target.timeout).await.map_err(|e| {
            AdapterError::new(
                ErrorClass::Retryable,
                format!("{label}: cannot connect as admin: {}", server_text(&e)),
            )
        })?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one admin command. A refusal by the server changed nothing (Redis applies all of an
    /// `ACL SETUSER`'s rules or none); a broken connection is `broken` (indeterminate for a
    /// change, retryable for a read).
    async fn command(
        &self,
        label: &str,
        command: &redis::Cmd,
        broken: ErrorClass,
    ) -> Result<Value, AdapterError> {
        let mut conn = self.admin(label).await?;
        match command.query_async::<Value>(&mut conn).await {
            Ok(value) => Ok(value),
            Err(error) if error.code().is_some() => Err(AdapterError::new(
                ErrorClass::NotApplied,
                format!("{label}: refused by the server: {}", server_text(&error)),
            )),
            Err(error) => {
                *self.admin.lock().await = None;
                Err(AdapterError::new(broken, format!("{label}: {}", server_text(&error))))
            }
        }
    }

    /// `ACL GETUSER <user>`: `None` when there is no such user.
    async fn get_user(&self, label: &str, user: &str) -> Result<Option<Value>, AdapterError> {
        let mut command = redis::cmd("ACL");
        command.arg("GETUSER").arg(user);
        let value = self.command(label, &command, ErrorClass::Retryable).await?;
        Ok((value != Value::Nil).then_some(value))
    }

    /// The password hashes `user` holds; not applied when there is no such user.
    async fn hashes(&self, label: &str, user: &str) -> Result<Vec<String>, AdapterError> {
        let Some(found) = self.get_user(label, user).await? else {
            return Err(AdapterError::new(
                ErrorClass::NotApplied,
                format!("{label}: no such user {user:?}"),
            ));
        };
        Ok(pairs(&found)
            .into_iter()
            .find(|(key, _)| key == "passwords")
            .map(|(_, list)| items(list).iter().filter_map(text_of).collect())
            .unwrap_or_default())
    }

    /// `ACL SETUSER <user> <rules…>` on an existing user, within the call's limit.
    async fn set_user(&self, what: &str, user: &str, rules: &[&str]) -> Result<(), AdapterError> {
        let label = format!("{}: {what}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Indeterminate, &label, async {
            self.hashes(&label, user).await?;
            let mut command = redis::cmd("ACL");
            command.arg("SETUSER").arg(user);
            for rule in rules {
                command.arg(*rule);
            }
            self.command(&label, &command, ErrorClass::Indeterminate).await.map(drop)
        })
        .await
    }

    /// The connections of `user` at least `min_age` old, the admin's own excepted.
    async fn clients(&self, user: &str, min_age: Duration) -> Result<u64, AdapterError> {
        let label = format!("{}: list the connections of {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let mut own = redis::cmd("CLIENT");
            own.arg("ID");
            let id = match self.command(&label, &own, ErrorClass::Retryable).await? {
                Value::Int(id) => id,
                _ => -1,
            };
            let mut list = redis::cmd("CLIENT");
            list.arg("LIST");
            let text = text_of(&self.command(&label, &list, ErrorClass::Retryable).await?)
                .unwrap_or_default();
            Ok(count_clients(&text, user, id, min_age.as_secs()))
        })
        .await
    }

    /// Whether `name` is a command the server flags read-only (`COMMAND INFO`).
    async fn read_only(&self, label: &str, name: &str) -> Result<bool, AdapterError> {
        let mut command = redis::cmd("COMMAND");
        command.arg("INFO").arg(name);
        let info = self.command(label, &command, ErrorClass::Retryable).await?;
        let flags = items(&info).first().map(|entry| items(entry).get(2).map(items));
        Ok(flags
            .flatten()
            .is_some_and(|flags| flags.iter().filter_map(text_of).any(|f| f == "readonly")))
    }
}

impl PasswordTarget for RedisAdapter {
    async fn set_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        let rule = zeroize::Zeroizing::new(format!("#{}", password_hash(value).as_str()));
        self.set_user(&format!("set the password of user {user:?}"), user, &["resetpass", &rule])
            .await
    }

    async fn login(&self, user: &str, value: &SecretValue) -> Result<Login, AdapterError> {
        let label = format!("{}: log in as {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            // A connection of its own that has not logged in, then `AUTH` and nothing else: only
            // the server's WRONGPASS means the credential was refused.
            let mut conn = self.connect(None, self.target.timeout).await.map_err(|e| {
                AdapterError::new(
                    ErrorClass::Retryable,
                    format!("{label}: cannot connect: {}", server_text(&e)),
                )
            })?;
            let mut auth = redis::cmd("AUTH");
            auth.arg(user).arg(value.expose());
            match auth.query_async::<Value>(&mut conn).await {
                Ok(_) => Ok(Login::Accepted),
                Err(error) if error.code() == Some("WRONGPASS") => Ok(Login::Refused),
                Err(error) => Err(AdapterError::new(
                    ErrorClass::Retryable,
                    format!("{label}: {}", server_text(&error)),
                )),
            }
        })
        .await
    }

    async fn set_login_enabled(&self, user: &str, enabled: bool) -> Result<(), AdapterError> {
        let rule = if enabled { "on" } else { "off" };
        self.set_user(&format!("turn user {user:?} {rule}"), user, &[rule]).await
    }

    async fn open_sessions(&self, user: &str) -> Result<u64, AdapterError> {
        self.clients(user, Duration::ZERO).await
    }

    async fn privileges(&self, user: &str) -> Result<Vec<String>, AdapterError> {
        let label = format!("{}: read the rules of {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            match self.get_user(&label, user).await? {
                Some(found) => Ok(rules(&found)),
                None => Err(AdapterError::new(
                    ErrorClass::NotApplied,
                    format!("{label}: no such user {user:?}"),
                )),
            }
        })
        .await
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AdapterError> {
        let label = format!("{}: look up user {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            Ok(self.get_user(&label, user).await?.is_some())
        })
        .await
    }

    /// Runs `query`, a command the server flags read-only (`PING`, `GET key`, `DBSIZE`, ...):
    /// its reply as text. Anything else is refused without being sent.
    async fn probe(&self, query: &str) -> Result<Option<String>, AdapterError> {
        let label = format!("{}: health command", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            let words: Vec<&str> = query.split_whitespace().collect();
            let Some((name, args)) = words.split_first() else {
                return Err(AdapterError::new(ErrorClass::NotApplied, format!("{label}: empty")));
            };
            if !name.eq_ignore_ascii_case("ping") && !self.read_only(&label, name).await? {
                return Err(AdapterError::new(
                    ErrorClass::NotApplied,
                    format!("{label}: {name:?} is not a read-only command (a health check may only read)"),
                ));
            }
            let mut command = redis::cmd(name);
            for arg in args {
                command.arg(*arg);
            }
            Ok(text_of(&self.command(&label, &command, ErrorClass::Retryable).await?))
        })
        .await
    }

    async fn add_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        let rule = zeroize::Zeroizing::new(format!("#{}", password_hash(value).as_str()));
        self.set_user(&format!("add a password to user {user:?}"), user, &[&rule]).await
    }

    async fn remove_password(&self, user: &str, value: &SecretValue) -> Result<(), AdapterError> {
        let label = format!("{}: remove a password of user {user:?}", self.describe());
        let hash = password_hash(value);
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Indeterminate, &label, async {
            // Removing a password the user does not hold is an error in Redis: done already.
            if !self.hashes(&label, user).await?.iter().any(|h| h == hash.as_str()) {
                return Ok(());
            }
            let rule = zeroize::Zeroizing::new(format!("!{}", hash.as_str()));
            let mut command = redis::cmd("ACL");
            command.arg("SETUSER").arg(user).arg(rule.as_str());
            self.command(&label, &command, ErrorClass::Indeterminate).await.map(drop)
        })
        .await
    }

    async fn password_count(&self, user: &str) -> Result<u64, AdapterError> {
        let label = format!("{}: count the passwords of {user:?}", self.describe());
        let _slot = self.slots.acquire().await;
        within(self.target.timeout, ErrorClass::Retryable, &label, async {
            Ok(self.hashes(&label, user).await?.len() as u64)
        })
        .await
    }

    async fn sessions_older_than(&self, user: &str, age: Duration) -> Result<u64, AdapterError> {
        self.clients(user, age).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_what_redis_stores() {
        // SHA-256("secret"), as `ACL GETUSER` lists it after `>secret`.
        assert_eq!(
            password_hash(&SecretValue::new("secret".to_owned())).as_str(),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
    }

    #[test]
    fn server_errors_lose_what_they_quote() {
        let error = RedisError::from((
            redis::ErrorKind::Client,
            "refused",
            "Error in ACL SETUSER modifier '#2bb80d537b1da3e3': Syntax error".to_owned(),
        ));
        let text = server_text(&error);
        assert!(!text.contains("2bb80d"), "{text}");
        assert!(text.contains("Syntax error"), "{text}");
    }

    #[test]
    fn clients_are_counted_by_user_and_age() {
        let list = "id=3 addr=127.0.0.1:1 laddr=x fd=8 name= age=100 idle=0 user=app cmd=get\n\
                    id=4 addr=127.0.0.1:2 laddr=x fd=9 name= age=2 idle=0 user=app cmd=get\n\
                    id=5 addr=127.0.0.1:3 laddr=x fd=10 name= age=50 idle=0 user=default cmd=client|list\n\
                    id=6 addr=127.0.0.1:4 laddr=x fd=11 name= age=70 idle=0 user=application cmd=get\n";
        assert_eq!(count_clients(list, "app", 5, 0), 2);
        assert_eq!(count_clients(list, "app", 5, 10), 1);
        assert_eq!(count_clients(list, "default", 5, 0), 0);
    }

    #[test]
    fn rules_leave_out_passwords_and_state() {
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let user = |state: &str, hash: &str| {
            Value::Array(vec![
                text("flags"),
                Value::Array(vec![text(state), text("sanitize-payload")]),
                text("passwords"),
                Value::Array(vec![text(hash)]),
                text("commands"),
                text("-@all +get"),
                text("keys"),
                text("~app:*"),
                text("channels"),
                text(""),
                text("selectors"),
                Value::Array(vec![]),
            ])
        };
        assert_eq!(rules(&user("on", "aa")), rules(&user("off", "bb")));
        assert!(rules(&user("on", "aa")).contains(&"commands -@all +get".to_owned()));
        assert!(!rules(&user("on", "aa")).iter().any(|r| r.contains("aa")));
    }
}
