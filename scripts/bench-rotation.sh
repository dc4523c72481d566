#!/usr/bin/env bash
# The rotation benchmark: N PostgreSQL roles rotated (immediate) through the embedded default and
# through a 3-node cluster with an agent, against a baseline ALTER ROLE + login loop with the same
# concurrency. Starts its own PostgreSQL (scram-sha-256) like the tests. Figures are printed, not
# asserted. Extra arguments go to the benchmark binary (e.g. --roles 1000 --concurrency 8).
#
# It runs twice. First as designed for production: PostgreSQL pinned to its own core(s) (the
# first half of them), dsops and the baseline client to the others (taskset), so the control
# plane does not compete with the database for CPU. Then with every process free to use every
# core. Both summaries are printed together at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_build_tools
ensure_packages util-linux:taskset
cargo build --release --locked -p dsops-tests --bin dsops-bench-rotation
trap stop_services EXIT
start_services

cores=$(nproc)
pg_pids() {
    # The postmaster and the processes it has forked; backends forked later inherit its affinity.
    local postmaster
    postmaster=$(head -n 1 "$DSOPS_SERVICES_DIR/postgres/data/postmaster.pid")
    echo "$postmaster"
    pgrep -P "$postmaster" || true
}
pin_postgres() {
    local pid
    for pid in $(pg_pids); do taskset -a -p -c "$1" "$pid" >/dev/null; done
}

out=$(mktemp -d -t dsops-bench-rotation.XXXXXX)
trap 'stop_services; rm -rf "$out"' EXIT
if [ "$cores" -ge 2 ]; then
    db_last=$((cores / 2 - 1))
    db_cores="0-$db_last"
    dsops_cores="$((db_last + 1))-$((cores - 1))"
    pin_postgres "$db_cores"
    echo "==> pinned: PostgreSQL on CPU(s) $db_cores, dsops and the baseline client on CPU(s) $dsops_cores"
    taskset -c "$dsops_cores" target/release/dsops-bench-rotation \
        --cores "pinned: PostgreSQL on CPU(s) $db_cores, dsops and the baseline on $dsops_cores" "$@" \
        | tee "$out/pinned"
    pin_postgres "0-$((cores - 1))"
else
    echo "==> one core: nothing to pin, shared figures only"
fi
echo "==> shared: every process on CPU(s) 0-$((cores - 1))"
target/release/dsops-bench-rotation --cores "shared: every process on CPU(s) 0-$((cores - 1))" "$@" \
    | tee "$out/shared"

echo
for run in pinned shared; do
    if [ -s "$out/$run" ]; then sed -n '/^summary/,$p' "$out/$run"; fi
done
