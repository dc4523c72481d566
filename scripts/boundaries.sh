#!/usr/bin/env bash
# The crate boundaries the design relies on, checked on the resolved dependency trees (no build):
#
#   dsops-agent   the agent ships alone: no control plane, no raft, no raft storage
#   dsops-state   the state machine is pure: no async runtime, no gRPC, no storage, no raft
#   dsops-config  configuration reads files only: no server, no gRPC runtime, no storage
#   dsops-identity client identity: no server code, no raft, no storage
#   dsops-evidence bundles verify anywhere, offline: no control plane, no raft, no storage, no
#                  network stack (tonic, hyper, tokio: the fuzz targets build it)
#   dsops-reports  reports are pure: no runtime, no gRPC, no storage, no raft
#   dsops-telemetry every binary links it: no control plane, no raft, no storage
#   dsops-store    the file store stands alone (the fuzz targets build it): no runtime, no network
#
# Prints each rule and fails on the first crate whose normal dependency tree contains a
# forbidden package.
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
check() {
    local crate=$1
    shift
    local tree
    tree=$(cargo tree --locked -p "$crate" -e normal --prefix none | awk '{print $1}' | sort -u)
    local forbidden found=""
    for forbidden in "$@"; do
        if grep -qx -- "$forbidden" <<<"$tree"; then
            found="$found $forbidden"
        fi
    done
    if [ -n "$found" ]; then
        echo "boundary broken: $crate depends on$found (cargo tree -p $crate -e normal -i <name> shows the path)" >&2
        status=1
    else
        echo "ok: $crate has none of: $*" >&2
    fi
}

check dsops-agent dsops-control-plane dsops-state openraft redb
check dsops-state tokio tonic hyper redb openraft dsops-control-plane
check dsops-config tokio tonic redb openraft dsops-control-plane dsops-state
check dsops-identity dsops-control-plane dsops-state openraft redb
check dsops-store tokio tonic hyper reqwest redb openraft dsops-control-plane dsops-state
check dsops-evidence redb openraft dsops-control-plane tonic hyper tokio
check dsops-telemetry dsops-control-plane dsops-state openraft redb
check dsops-reports tokio tonic redb openraft dsops-control-plane
exit $status
