//! Database fixtures for rotation tests: users created for one test (with grants), dropped at the
//! end, and the agent's view of the server ([`DatabaseTarget`]).

use std::time::Duration;

use dsops_agent::SecretValue;
use dsops_agent::adapter::DatabaseTarget;
use sqlx::{AssertSqlSafe, Connection as _};

use crate::services::{Service, unique_name};

/// The parts of a server URL.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Admin user.
    pub user: String,
    /// Admin password (test servers' passwords are not secrets).
    pub password: String,
    /// Database in the path, if any.
    pub database: Option<String>,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ServerUrl {
    /// Parses `scheme://user:password@host:port/database`.
    pub fn parse(url: &str) -> ServerUrl {
        let (_, rest) = url.split_once("://").expect("URL has a scheme");
        let (credentials, rest) = rest.rsplit_once('@').expect("URL has credentials");
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let (authority, database) =
            rest.split_once('/').map_or((rest, None), |(a, d)| (a, Some(d)));
        let (host, port) = authority.rsplit_once(':').expect("URL has a port");
        ServerUrl {
            host: host.to_owned(),
            port: port.parse().expect("numeric port"),
            user: percent_decode(user),
            password: percent_decode(password),
            database: database.filter(|d| !d.is_empty()).map(str::to_owned),
        }
    }
}

/// Which kind of database a fixture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// PostgreSQL.
    Postgres,
    /// MariaDB (MySQL protocol).
    MariaDb,
    /// Redis ACL users (statements are commands, words separated by spaces).
    Redis,
}

impl Flavor {
    /// The test service.
    pub fn service(self) -> Service {
        match self {
            Flavor::Postgres => Service::Postgres,
            Flavor::MariaDb => Service::MariaDb,
            Flavor::Redis => Service::Redis,
        }
    }

    /// The catalog credential kind of a user's password on this server.
    pub fn kind(self) -> &'static str {
        match self {
            Flavor::Postgres | Flavor::MariaDb => "db_password",
            Flavor::Redis => "acl_password",
        }
    }

    /// The admin's view of the server, as the agent gets it.
    pub fn target(self) -> DatabaseTarget {
        let url = ServerUrl::parse(&self.service().url());
        // `redis://:password@…`: the `default` user (requirepass).
        let user = if url.user.is_empty() && self == Flavor::Redis {
            "default".to_owned()
        } else {
            url.user
        };
        DatabaseTarget {
            host: url.host,
            port: url.port,
            database: url.database,
            admin_user: user,
            admin_password: SecretValue::new(url.password),
            timeout: Duration::from_secs(10),
            max_connections: 4,
            tls_mode: None,
            ca_file: None,
        }
    }

    /// A fresh login as `user` with `password`, through dsops's own adapter for this server.
    pub async fn login(
        self,
        user: &str,
        password: &SecretValue,
    ) -> Result<dsops_agent::adapter::Login, dsops_agent::adapter::AdapterError> {
        use dsops_agent::adapter::{MySqlAdapter, PasswordTarget, PostgresAdapter, RedisAdapter};
        match self {
            Flavor::Postgres => PostgresAdapter::new(self.target()).login(user, password).await,
            Flavor::MariaDb => MySqlAdapter::new(self.target()).login(user, password).await,
            Flavor::Redis => RedisAdapter::new(self.target()).login(user, password).await,
        }
    }

    /// A fresh login as `user` with `password` through the server's own command-line client
    /// (`psql`, `mariadb`, `redis-cli`), which shares no code with dsops: `Ok(true)` when it logged in,
    /// `Ok(false)` when the server refused the password, `Err` when the client could not tell.
    /// The password reaches the client through its environment, not its command line.
    pub fn login_with_client(self, user: &str, password: &str) -> Result<bool, String> {
        let url = ServerUrl::parse(&self.service().url());
        let output = match self {
            Flavor::Postgres => std::process::Command::new("psql")
                .args(["-w", "-X", "-q", "-At", "-c", "select 1"])
                .args(["-h", &url.host, "-p", &url.port.to_string(), "-U", user])
                .args(["-d", url.database.as_deref().unwrap_or("postgres")])
                .env("PGPASSWORD", password)
                .env("PGCONNECT_TIMEOUT", "10")
                .output(),
            Flavor::MariaDb => std::process::Command::new("mariadb")
                .args(["--no-defaults", "--protocol=TCP", "--connect-timeout=10", "-N", "-B"])
                .args(["-h", &url.host, "-P", &url.port.to_string(), "-u", user])
                .args(["-e", "select 1"])
                .env("MYSQL_PWD", password)
                .output(),
            Flavor::Redis => std::process::Command::new("redis-cli")
                .args(["--no-auth-warning", "-h", &url.host, "-p", &url.port.to_string()])
                .args(["--user", user, "ping"])
                .env("REDISCLI_AUTH", password)
                .output(),
        }
        .map_err(|e| format!("running the {self:?} client: {e}"))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = if self == Flavor::Redis { "PONG" } else { "1" };
        if output.status.success() && stdout.trim() == expected {
            return Ok(true);
        }
        // A Redis user without the right to PING is told NOPERM only once it has logged in.
        if self == Flavor::Redis && output.status.success() && stdout.contains("NOPERM") {
            return Ok(true);
        }
        let refused = match self {
            Flavor::Postgres => stderr.contains("password authentication failed"),
            Flavor::MariaDb => stderr.contains("Access denied"),
            // redis-cli prints the AUTH refusal and the NOAUTH of the PING that follows.
            Flavor::Redis => format!("{stdout}{stderr}").contains("WRONGPASS"),
        };
        if refused { Ok(false) } else { Err(format!("{self:?} client: {}", stderr.trim())) }
    }

    /// Runs admin statements (test-made names only).
    pub async fn admin(self, statements: &[String]) {
        let url = self.service().url();
        match self {
            Flavor::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("admin login");
                for sql in statements {
                    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                        .execute(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
            Flavor::MariaDb => {
                let mut conn = sqlx::MySqlConnection::connect(&url).await.expect("admin login");
                for sql in statements {
                    sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                        .execute(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                }
            }
            Flavor::Redis => {
                use crate::redis::{Connection, Reply, parse_url};
                let (address, password) = parse_url(&url);
                let mut conn = Connection::connect(&address).await.expect("redis connect");
                if let Some(password) = password {
                    let reply = conn.command(&["AUTH", &password]).await.expect("redis auth");
                    assert_eq!(reply, Reply::Status("OK".to_owned()), "admin AUTH");
                }
                for command in statements {
                    let words: Vec<&str> = command.split(' ').collect();
                    let reply = conn.command(&words).await.expect("redis command");
                    assert!(!matches!(reply, Reply::Error(_)), "{command}: {reply:?}");
                }
            }
        }
    }

    /// A session logged in as `user` with `password`, open until dropped.
    pub async fn session(self, user: &str, password: &str) -> Box<dyn std::any::Any + Send> {
        let url = crate::services::with_credentials(&self.service().url(), user, password);
        match self {
            Flavor::Postgres => Box::new(
                sqlx::PgConnection::connect(&crate::services::with_database(&url, "postgres"))
                    .await
                    .expect("session"),
            ),
            Flavor::MariaDb => Box::new(
                sqlx::MySqlConnection::connect(&crate::services::with_database(&url, ""))
                    .await
                    .expect("session"),
            ),
            Flavor::Redis => {
                use crate::redis::{Connection, Reply, parse_url};
                let (address, _) = parse_url(&self.service().url());
                let mut conn = Connection::connect(&address).await.expect("redis connect");
                let reply = conn.command(&["AUTH", user, password]).await.expect("AUTH");
                assert_eq!(reply, Reply::Status("OK".to_owned()), "session AUTH as {user}");
                Box::new(conn)
            }
        }
    }

    /// Creates a login user with `password` and read access to a table of a test schema
    /// (`grants: false` leaves it without), returning its name.
    pub async fn create_user(self, prefix: &str, password: &str, grants: bool) -> TestUser {
        let name = unique_name(prefix);
        let literal = password.replace('\'', "''");
        let mut statements = match self {
            Flavor::Postgres => vec![format!("create role \"{name}\" login password '{literal}'")],
            Flavor::MariaDb => vec![format!("create user '{name}'@'%' identified by '{literal}'")],
            Flavor::Redis => {
                assert!(!password.contains(' '), "test passwords for Redis have no spaces");
                vec![format!("ACL SETUSER {name} on >{password}")]
            }
        };
        if grants {
            statements.extend(match self {
                Flavor::Postgres => vec![
                    "create table if not exists public.dsops_fixture (id int)".to_owned(),
                    format!("grant select, insert on public.dsops_fixture to \"{name}\""),
                ],
                Flavor::MariaDb => vec![
                    "create database if not exists dsops_fixture".to_owned(),
                    format!("grant select, insert on dsops_fixture.* to '{name}'@'%'"),
                ],
                Flavor::Redis => {
                    vec![format!("ACL SETUSER {name} ~dsops_fixture:* +get +set +ping")]
                }
            });
        }
        self.admin(&statements).await;
        TestUser { flavor: self, name }
    }
}

/// A user made for one test; call [`TestUser::drop_user`] at the end.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Which server.
    pub flavor: Flavor,
    /// Its name.
    pub name: String,
}

impl TestUser {
    /// Drops the user (closing its sessions first on PostgreSQL).
    pub async fn drop_user(&self) {
        let name = &self.name;
        let statements = match self.flavor {
            Flavor::Postgres => vec![
                format!(
                    "select pg_terminate_backend(pid) from pg_stat_activity where usename = '{name}'"
                ),
                format!("drop owned by \"{name}\""),
                format!("drop role if exists \"{name}\""),
            ],
            Flavor::MariaDb => vec![format!("drop user if exists '{name}'@'%'")],
            // Also closes its connections.
            Flavor::Redis => vec![format!("ACL DELUSER {name}")],
        };
        self.flavor.admin(&statements).await;
    }
}
