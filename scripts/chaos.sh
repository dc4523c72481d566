#!/usr/bin/env bash
# The chaos run (tests/src/bin/chaos.rs): a 3-node control plane and 3 agents in 2 segments
# rotating real PostgreSQL, MariaDB and Redis credentials while nodes are killed and restarted,
# cut off, their links delayed, and agents killed; a checker judges the history. Starts the
# database servers itself (scripts/services.sh) and stops them after.
#
#   scripts/chaos.sh --seconds 180          # CI's run
#   scripts/chaos.sh --seconds 3600         # the documented hour
#   scripts/chaos.sh --seconds 600 --seed 42  # replays seed 42's faults
#
# Prints the seed first and the figures last: faults by kind, runs by final phase, receipts
# checked, probes, violations. Exits 1 on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_build_tools
trap stop_services EXIT
start_services
cargo build --locked -p dsops-tests --bin dsops-chaos >&2
target/debug/dsops-chaos "$@"
