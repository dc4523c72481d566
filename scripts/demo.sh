#!/usr/bin/env bash
# Builds dsops and runs its main job on the embedded default (no cluster, no server): rotates the
# secrets of an example configuration and shows `dsops rotation status` afterwards.
#
# Application secrets rotate always. When PostgreSQL is installed here (or DSOPS_DEMO_PG_URL names
# a server, postgres://ADMIN:PASSWORD@HOST:PORT/DB), a database password rotates too: a private
# password-enforcing instance is started for the demo (as the tests do) unless a URL is given, a
# role is created with a first password, and dsops changes it, proves the new one logs in, makes
# it current in the store and shows the old one no longer works.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/services.sh
ensure_build_tools

cargo build --locked --bin dsops
dsops="$repo/target/debug/dsops"
work=$(mktemp -d -t dsops-demo.XXXXXX)
cleanup() { stop_services; rm -rf "$work"; }
trap cleanup EXIT
cp examples/demo/dsops.yaml "$work/dsops.yaml"
cd "$work"

pg_url=${DSOPS_DEMO_PG_URL:-}
if [ -z "$pg_url" ] && compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    DSOPS_SERVICES_DIR=$(mktemp -d -t dsops-services.XXXXXX)
    chmod 755 "$DSOPS_SERVICES_DIR"
    start_postgres
    pg_url=$DSOPS_TEST_PG_URL
fi

if [ -n "$pg_url" ]; then
    rest=${pg_url#*://}; creds=${rest%@*}; hostpart=${rest##*@}
    admin_user=${creds%%:*}; admin_password=${creds#*:}
    hostport=${hostpart%%/*}; host=${hostport%:*}; port=${hostport##*:}
    first_password="Demo-first-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    PGOPTIONS="-c client_min_messages=warning" PGPASSWORD=$admin_password psql -q -h "$host" -p "$port" -U "$admin_user" -d postgres \
        -c "drop role if exists dsops_demo_app" -c "create role dsops_demo_app login password '$first_password'"
    cat >> dsops.yaml <<YAML
    DB_PASSWORD:
      from: { store: "store://local/app/db#password", service: "svc://pg-demo?kind=db_password" }
      rotation: { strategy: immediate, schedule: "0 3 * * 0", config: { username: dsops_demo_app } }
services:
  pg-demo:
    type: postgresql
    host: $host
    port: $port
    database: postgres
    admin_store: store://local/pg/admin       # fields user, password
YAML
    echo "== storing the admin credential and the app's current password (read from standard input)"
    printf %s "$admin_user" | "$dsops" store put store://local/pg/admin#user
    printf %s "$admin_password" | "$dsops" store put store://local/pg/admin#password
    printf %s "$first_password" | "$dsops" store put store://local/app/db#password
else
    echo "(no PostgreSQL here: rotating application secrets only; set DSOPS_DEMO_PG_URL to add a database)"
fi

echo
echo "== dsops rotate --env demo --all --force"
"$dsops" rotate --env demo --all --force --reason "demo"
echo
echo "== dsops rotation status --env demo"
"$dsops" rotation status --env demo
if [ -n "$pg_url" ]; then
    echo
    echo "== dsops rotation history --env demo --key DB_PASSWORD"
    "$dsops" rotation history --env demo --key DB_PASSWORD
    echo
    echo "== the new password (from the store, through dsops exec) logs in; the first one does not"
    "$dsops" exec --env demo -- sh -c "PGPASSWORD=\"\$DB_PASSWORD\" psql -h $host -p $port -U dsops_demo_app -d postgres -tAc 'select current_user'"
    if PGPASSWORD=$first_password psql -h "$host" -p "$port" -U dsops_demo_app -d postgres -tAc 'select 1' >/dev/null 2>&1; then
        echo "error: the first password still works" >&2
        exit 1
    fi
    echo "first password refused, as it should be"
    PGPASSWORD=$admin_password psql -q -h "$host" -p "$port" -U "$admin_user" -d postgres -c "drop role if exists dsops_demo_app"
fi
