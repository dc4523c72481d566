#!/usr/bin/env bash
# The chaos run (tests/src/bin/chaos/): a 3-node control plane and 3 agents in 2 segments
# rotating real PostgreSQL, MariaDB and Redis credentials, an approver deciding the gated runs,
# while nodes are killed and restarted, cut off, their links delayed, a node's clock stepped and
# agent processes SIGKILLed; a checker judges the history (docs/testing.md). Starts the database
# servers itself (scripts/services.sh) and stops them after.
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
cargo build --locked -p dsops-tests --bin dsops-chaos -p dsops-agent --bin dsops-agent >&2
target/debug/dsops-chaos "$@"
