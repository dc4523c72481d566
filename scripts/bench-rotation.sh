#!/usr/bin/env bash
# The rotation benchmark: N PostgreSQL roles rotated (immediate) through the embedded default and
# through a 3-node cluster with an agent, against a baseline ALTER ROLE + login loop with the same
# concurrency. Starts its own PostgreSQL (scram-sha-256) like the tests. Figures are printed, not
# asserted. Extra arguments go to the benchmark binary (e.g. --roles 1000 --concurrency 8).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
ensure_build_tools
cargo build --release --locked -p dsops-tests --bin dsops-bench-rotation
trap stop_services EXIT
start_services
target/release/dsops-bench-rotation "$@"
