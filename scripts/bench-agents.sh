#!/usr/bin/env bash
# The agent-session benchmark: 1,000 simulated agents (real enrolment, real mTLS sessions) on a
# 3-node cluster of dsops-server processes on loopback. Prints the leader's memory, its CPU at
# idle heartbeat, and the time to re-establish every session after the leader is SIGKILLed.
# Figures are printed, not asserted. Extra arguments go to the benchmark binary
# (e.g. --agents 1000 --idle-seconds 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools
# 1,000 sessions on each side of one machine: more open files than the usual default.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked -p dsops-control-plane --bin dsops-server -p dsops-tests --bin dsops-bench-agents
exec target/release/dsops-bench-agents --server-bin target/release/dsops-server "$@"
