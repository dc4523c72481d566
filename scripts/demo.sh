#!/usr/bin/env bash
# Builds dsops and runs its main job on the embedded default (no cluster, no server) over the
# example configuration: validate it, then show the plan of each environment.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools

cargo build --locked --bin dsops
dsops=target/debug/dsops
"$dsops" validate -f examples/dsops.yaml
for env in dev prod; do
    echo
    echo "== dsops plan --env $env"
    "$dsops" plan --env "$env" -f examples/dsops.yaml
done
