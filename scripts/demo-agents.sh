#!/usr/bin/env bash
# A 3-node control plane and two remote agents in two network segments, on one machine: the
# agent of segment `seg-pg` rotates a PostgreSQL password, the agent of `seg-my` a MariaDB
# password. Each agent enrols with a one-time token, keeps its own stores (admin credentials
# never reach the control plane) and has its session with the leader over mTLS.
#
# It installs PostgreSQL and MariaDB if missing and starts private password-enforcing instances,
# as the tests do; everything lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
. scripts/services.sh
ensure_build_tools
ensure_packages postgresql:'/usr/lib/postgresql/*/bin/initdb' mariadb-server:"$MARIADBD" mariadb-client:mariadb

cargo build --locked --bin dsops --bin dsops-server --bin dsops-agent
export PATH="$repo/target/debug:$PATH"
work=$(mktemp -d -t dsops-agents.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_services
    rm -rf "$work"
}
trap cleanup EXIT
DSOPS_SERVICES_DIR=$(mktemp -d -t dsops-services.XXXXXX)
chmod 755 "$DSOPS_SERVICES_DIR"
start_postgres
start_mariadb
cd "$work"

step() { echo; echo "== $*"; }
parse() { # URL → user password host port
    local rest=${1#*://} creds hostpart hostport
    creds=${rest%@*}; hostpart=${rest##*@}; hostport=${hostpart%%/*}
    echo "${creds%%:*} ${creds#*:} ${hostport%:*} ${hostport##*:}"
}
read -r pg_user pg_password pg_host pg_port <<<"$(parse "$DSOPS_TEST_PG_URL")"
read -r my_user my_password my_host my_port <<<"$(parse "$DSOPS_TEST_MYSQL_URL")"
first="Demo-first-$(random_password)"
PGPASSWORD=$pg_password psql -q -h "$pg_host" -p "$pg_port" -U "$pg_user" -d postgres \
    -c "create role app_pg login password '$first'"
mariadb --no-defaults -h "$my_host" -P "$my_port" -u "$my_user" -p"$my_password" \
    -e "create user 'app_my'@'%' identified by '$first'"

step "three control-plane nodes"
p1=$(free_port); p2=$(free_port); p3=$(free_port)
dsops-server init --data-dir n1 --listen "127.0.0.1:$p1" >/dev/null
dsops-server run --data-dir n1 2>n1.log & pids+=($!)
export DSOPS_SERVER="127.0.0.1:$p1" DSOPS_CREDENTIALS="$work/n1/admin"
wait_for "dsops cluster status" 30
for n in 2 3; do
    port_var="p$n"
    dsops-server join --data-dir "n$n" --listen "127.0.0.1:${!port_var}" --peer "127.0.0.1:$p1" \
        --token "$(dsops cluster token)" >/dev/null
    dsops-server run --data-dir "n$n" 2>"n$n.log" & pids+=($!)
done
wait_for "[ \$(dsops cluster status --output json | python3 -c 'import json,sys; print(sum(m[\"role\"] in (\"leader\", \"follower\") for m in json.load(sys.stdin)[\"members\"]))') = 3 ]" 60
dsops cluster status

step "the configuration: one store and one database per segment"
cat > dsops.yaml <<YAML
version: 1
secretStores:
  pg-store: { type: file, segment: seg-pg }
  my-store: { type: file, segment: seg-my }
services:
  pg:
    type: postgresql
    segment: seg-pg
    host: $pg_host
    port: $pg_port
    database: postgres
    admin_store: store://pg-store/db/admin
  my:
    type: mysql
    segment: seg-my
    host: $my_host
    port: $my_port
    admin_store: store://my-store/db/admin
envs:
  prod:
    PG_PASSWORD:
      from: { store: "store://pg-store/app/pg#password", service: "svc://pg?kind=db_password" }
      rotation: { strategy: immediate, config: { username: app_pg } }
    MY_PASSWORD:
      from: { store: "store://my-store/app/my#password", service: "svc://my?kind=db_password" }
      rotation: { strategy: immediate, config: { username: app_my } }
YAML
cat dsops.yaml
dsops apply -f dsops.yaml

step "two agents enrol with one-time tokens, one per segment"
DSOPS_AGENT_TOKEN=$(dsops agent token create --segment seg-pg --ttl 10m) \
    dsops-agent enroll --server "127.0.0.1:$p2" --data-dir agent-pg --hostname bastion-pg
DSOPS_AGENT_TOKEN=$(dsops agent token create --segment seg-my --ttl 10m) \
    dsops-agent enroll --server "127.0.0.1:$p3" --data-dir agent-my --hostname bastion-my

step "each agent's admin credential and the app's first password go into its own store"
printf %s "$pg_user" | dsops store put store://pg-store/db/admin#user --state-dir agent-pg
printf %s "$pg_password" | dsops store put store://pg-store/db/admin#password --state-dir agent-pg
printf %s "$first" | dsops store put store://pg-store/app/pg#password --state-dir agent-pg
printf %s "$my_user" | dsops store put store://my-store/db/admin#user --state-dir agent-my
printf %s "$my_password" | dsops store put store://my-store/db/admin#password --state-dir agent-my
printf %s "$first" | dsops store put store://my-store/app/my#password --state-dir agent-my

dsops-agent run --data-dir agent-pg -f dsops.yaml --server "127.0.0.1:$p2" 2>agent-pg.log & pids+=($!)
dsops-agent run --data-dir agent-my -f dsops.yaml --server "127.0.0.1:$p3" 2>agent-my.log & pids+=($!)
wait_for "[ \$(dsops agent list --output json | python3 -c 'import json,sys; print(sum(a[\"connected\"] for a in json.load(sys.stdin)))') = 2 ]" 30
step "dsops agent list"
dsops agent list

step "dsops rotate --env prod --all --force"
dsops rotate --env prod --all --force --reason demo
step "dsops rotation status --env prod"
dsops rotation status --env prod

step "the new passwords (read from each agent's store) log in; the first ones do not"
pg_new=$(dsops get --env prod --key PG_PASSWORD --state-dir agent-pg)
my_new=$(dsops get --env prod --key MY_PASSWORD --state-dir agent-my)
PGPASSWORD=$pg_new psql -h "$pg_host" -p "$pg_port" -U app_pg -d postgres -tAc "select 'postgres: logged in as ' || current_user"
mariadb --no-defaults -h "$my_host" -P "$my_port" -u app_my -p"$my_new" -N -e "select concat('mariadb: logged in as ', current_user())"
if PGPASSWORD=$first psql -h "$pg_host" -p "$pg_port" -U app_pg -d postgres -tAc 'select 1' >/dev/null 2>&1 \
    || mariadb --no-defaults -h "$my_host" -P "$my_port" -u app_my -p"$first" -e 'select 1' >/dev/null 2>&1; then
    echo "error: a first password still works" >&2
    exit 1
fi
echo "first passwords refused, as they should be"
