//! Where the test servers are. `scripts/test.sh` starts them and exports their URLs; a test run
//! without them fails with a message saying how to get them, rather than passing vacuously.

use std::sync::atomic::{AtomicU32, Ordering};

/// A server the test suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// PostgreSQL (password-enforcing: scram-sha-256).
    Postgres,
    /// MariaDB.
    MariaDb,
    /// Redis with `requirepass`.
    Redis,
}

impl Service {
    /// The environment variable holding the server's admin URL.
    pub fn variable(self) -> &'static str {
        match self {
            Service::Postgres => "DSOPS_TEST_PG_URL",
            Service::MariaDb => "DSOPS_TEST_MYSQL_URL",
            Service::Redis => "DSOPS_TEST_REDIS_URL",
        }
    }

    /// The admin URL, e.g. `postgres://postgres:PASSWORD@127.0.0.1:PORT/postgres`.
    ///
    /// # Panics
    /// When the variable is unset: the suite must run through `scripts/test.sh`.
    pub fn url(self) -> String {
        std::env::var(self.variable()).unwrap_or_else(|_| {
            panic!(
                "{} is not set: run the tests with scripts/test.sh, which starts PostgreSQL, MariaDB and Redis",
                self.variable()
            )
        })
    }
}

/// A name no other test (in this or a parallel run) uses: `prefix_<pid>_<n>_<nanos>`, lower
/// case, valid as a database, role or user name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// Replaces the user and password of a URL (`scheme://user:password@rest`).
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:{password}@{host}")
}

/// Replaces the path (database) of a URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    format!("{scheme}://{authority}/{database}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten() {
        let url = "postgres://postgres:pw@127.0.0.1:5432/postgres";
        assert_eq!(
            with_credentials(url, "app", "s3cret"),
            "postgres://app:s3cret@127.0.0.1:5432/postgres"
        );
        assert_eq!(with_database(url, "t1"), "postgres://postgres:pw@127.0.0.1:5432/t1");
        assert_ne!(unique_name("x"), unique_name("x"));
    }
}
