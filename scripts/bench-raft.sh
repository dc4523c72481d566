#!/usr/bin/env bash
# The control-plane benchmark: replicated write throughput and commit latency of dsops (1 and 3
# `dsops-server` processes) against a 3-node etcd cluster, all on loopback with durable storage
# and mutual TLS, at 1, 16 and 64 concurrent clients; then leader failover time over 20 trials.
# Figures are printed, not asserted. Extra arguments go to the benchmark binary
# (e.g. --seconds 10 --trials 20 --concurrency 1,16,64).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools
ensure_packages etcd-server:/usr/bin/etcd

cargo build --release --locked -p dsops-control-plane --bin dsops-server -p dsops-tests --bin dsops-bench-raft
exec target/release/dsops-bench-raft --server-bin target/release/dsops-server --etcd-bin /usr/bin/etcd "$@"
