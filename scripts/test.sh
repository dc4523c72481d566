#!/usr/bin/env bash
# Runs the whole dsops test suite against real servers.
#
# Installs what is missing (C compiler; PostgreSQL, MariaDB, Redis from Debian's packages), starts
# private instances in temporary directories on free loopback ports, runs `cargo test` for the
# whole workspace, and stops and removes the instances again, whatever the outcome. First it
# validates the deployment artefacts in deploy/ (scripts/check-deploy.sh).
# Extra arguments go to `cargo test` (e.g. scripts/test.sh -p dsops-control-plane).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_build_tools
# The deployment artefacts, by the validators of their formats (quick; no build needed).
scripts/check-deploy.sh
trap stop_services EXIT
start_services

cargo test --workspace --locked "$@"
