#!/usr/bin/env bash
# Runs the whole dsops test suite against real servers.
#
# Installs what is missing (C compiler; PostgreSQL, MariaDB, Redis from Debian's packages), starts
# private instances in temporary directories on free loopback ports, runs `cargo test` for the
# whole workspace, and stops and removes the instances again, whatever the outcome. First it
# validates the deployment artefacts in deploy/ (scripts/check-deploy.sh).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p dsops-control-plane). Without
# arguments it then runs the chaos run (tests/src/bin/chaos/) for DSOPS_CHAOS_SECONDS (180).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_build_tools
# The deployment artefacts, by the validators of their formats (quick; no build needed).
scripts/check-deploy.sh
trap stop_services EXIT
start_services

cargo test --workspace --locked "$@"

# The whole suite (no arguments): also the chaos run against the same servers, 3 minutes unless
# DSOPS_CHAOS_SECONDS says otherwise (0 skips it).
if [ $# -eq 0 ] && [ "${DSOPS_CHAOS_SECONDS:-180}" -gt 0 ]; then
    cargo build --locked -p dsops-tests --bin dsops-chaos -p dsops-agent --bin dsops-agent >&2
    target/debug/dsops-chaos --seconds "${DSOPS_CHAOS_SECONDS:-180}"
fi
