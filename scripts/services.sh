#!/usr/bin/env bash
# Starts the servers the tests need, each in its own temporary directory on a free loopback port,
# with passwords enforced:
#   PostgreSQL  scram-sha-256 for every connection (host and local)
#   MariaDB     no anonymous users, root and the test admin with passwords
#   Redis       requirepass
# Usage: source scripts/services.sh; start_services; ...; stop_services
# Exports DSOPS_TEST_PG_URL, DSOPS_TEST_MYSQL_URL, DSOPS_TEST_REDIS_URL, and DSOPS_TEST_PYTHON
# (a virtual environment with aiosmtpd, which the email tests start themselves).

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$SCRIPTS_DIR/lib.sh"

DSOPS_SERVICES_DIR=""
_service_user() {
    # PostgreSQL and MariaDB refuse to run as root: use their system users then.
    if [ "$(id -u)" -eq 0 ]; then echo "$1"; else id -un; fi
}
_run_as() {
    # From the services directory: PostgreSQL's tools chdir back to the caller's working
    # directory, which its user may not be allowed to enter (e.g. a clone under /root).
    local user=$1; shift
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$DSOPS_SERVICES_DIR" && runuser -u "$user" -- "$@")
    else
        (cd "$DSOPS_SERVICES_DIR" && "$@")
    fi
}

# Debian puts the server binaries in sbin directories, which a sudo user's PATH may lack.
MARIADBD=/usr/sbin/mariadbd

start_postgres() {
    local bin dir port password user
    bin=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 | xargs dirname)
    dir="$DSOPS_SERVICES_DIR/postgres"
    user=$(_service_user postgres)
    mkdir -p "$dir"
    chown "$user" "$dir"
    port=$(free_port)
    password=$(random_password)
    echo "$password" > "$dir/pw"
    chown "$user" "$dir/pw"
    _run_as "$user" "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pw" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    rm -f "$dir/pw"
    _run_as "$user" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null \
        || { cat "$dir/server.log" >&2; return 1; }
    export DSOPS_TEST_PG_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"
    PG_BIN=$bin
    echo "==> PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (scram-sha-256)" >&2
}

start_mariadb() {
    local dir port password user
    dir="$DSOPS_SERVICES_DIR/mariadb"
    user=$(_service_user mysql)
    mkdir -p "$dir"
    chown "$user" "$dir"
    port=$(free_port)
    password=$(random_password)
    _run_as "$user" mariadb-install-db --no-defaults --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; return 1; }
    _run_as "$user" "$MARIADBD" --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" --skip-log-bin \
        --innodb-flush-log-at-trx-commit=0 --max-connections=300 >"$dir/server.log" 2>&1 &
    wait_for "mariadb-admin --no-defaults --socket='$dir/mysqld.sock' -uroot ping" 60 \
        || { cat "$dir/server.log" >&2; return 1; }
    # Remove anonymous users, give root a password, and create the admin the tests use.
    mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot <<SQL || { echo "could not set up MariaDB users" >&2; return 1; }
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE USER 'dsops_admin'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO 'dsops_admin'@'%' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';
SQL
    export DSOPS_TEST_MYSQL_URL="mysql://dsops_admin:$password@127.0.0.1:$port/mysql"
    MARIADB_SOCKET="$dir/mysqld.sock"
    MARIADB_PID="$dir/mysqld.pid"
    echo "==> MariaDB $("$MARIADBD" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
}

start_redis() {
    local dir port password
    dir="$DSOPS_SERVICES_DIR/redis"
    mkdir -p "$dir"
    port=$(free_port)
    password=$(random_password)
    # The password goes through a config file, not the command line (visible in ps).
    cat > "$dir/redis.conf" <<CONF
port $port
bind 127.0.0.1
dir $dir
requirepass $password
save ""
appendonly no
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
CONF
    chmod 600 "$dir/redis.conf"
    redis-server "$dir/redis.conf"
    # The password reaches redis-cli through its environment, not its command line.
    export REDISCLI_AUTH="$password"
    wait_for "[ -s '$dir/redis.pid' ] && redis-cli -p $port ping | grep -q PONG" 30 \
        || { cat "$dir/redis.log" >&2; return 1; }
    unset REDISCLI_AUTH
    export DSOPS_TEST_REDIS_URL="redis://:$password@127.0.0.1:$port"
    REDIS_PID="$dir/redis.pid"
    echo "==> Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$port (requirepass)" >&2
}

start_services() {
    ensure_packages postgresql:'/usr/lib/postgresql/*/bin/initdb' mariadb-server:"$MARIADBD" \
        mariadb-client:mariadb redis-server:/usr/bin/redis-server redis-tools:redis-cli python3:python3 \
        poppler-utils:pdftotext prometheus:promtool openssl:openssl pebble:pebble
    DSOPS_SERVICES_DIR=$(mktemp -d -t dsops-services.XXXXXX)
    chmod 755 "$DSOPS_SERVICES_DIR"
    ensure_python_tools
    start_postgres && start_mariadb && start_redis
}

stop_services() {
    [ -n "$DSOPS_SERVICES_DIR" ] || return 0
    if [ -n "${PG_BIN:-}" ] && [ -d "$DSOPS_SERVICES_DIR/postgres/data" ]; then
        _run_as "$(_service_user postgres)" "$PG_BIN/pg_ctl" -D "$DSOPS_SERVICES_DIR/postgres/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "${MARIADB_PID:-}" ] && [ -s "$MARIADB_PID" ]; then
        kill "$(cat "$MARIADB_PID")" 2>/dev/null || true
    fi
    if [ -n "${REDIS_PID:-}" ] && [ -s "$REDIS_PID" ]; then
        kill "$(cat "$REDIS_PID")" 2>/dev/null || true
    fi
    # Give the servers a moment to exit before their directories go.
    sleep 0.5
    rm -rf "$DSOPS_SERVICES_DIR"
    DSOPS_SERVICES_DIR=""
}
