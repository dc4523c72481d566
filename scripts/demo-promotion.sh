#!/usr/bin/env bash
# A promotion wave as a user sees it: one control-plane node and one agent on this machine,
# API_KEY in dev, staging and production (dev soaks 20 s, staging 20 s); `dsops rotate` of
# production starts the wave at dev, `dsops promotion status` follows it, a halt stops the line
# during staging's soak, a resume lets production go. Everything lives in a temporary directory
# and stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bin dsops --bin dsops-server --bin dsops-agent
export PATH="$PWD/target/debug:$PATH"

work=$(mktemp -d -t dsops-promotion.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
step() { printf '\n$ %s\n' "$*"; }
wait_for() {
    local deadline=$((SECONDS + $2))
    until eval "$1" >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then echo "timed out: $1" >&2; exit 1; fi
        sleep 0.5
    done
}

port=$(free_port)
dsops-server init --data-dir n1 --listen "127.0.0.1:$port" >/dev/null
dsops-server run --data-dir n1 2>n1.log & pids+=($!)
export DSOPS_SERVER="127.0.0.1:$port" DSOPS_CREDENTIALS="$work/n1/admin" NO_COLOR=1
wait_for "dsops cluster status" 30

var() {
    printf '    API_KEY:\n      from: { store: "store://local/%s/api#key" }\n      rotation: { strategy: random, config: { length: 32 } }\n' "$1"
}
{
    cat <<'EOF'
version: 1
secretStores:
  local: { type: file }
rotation:
  promotion:
    - { env: dev, soak: 20s }
    - { env: staging, soak: 20s }
    - { env: production }
envs:
  dev:
EOF
    var dev
    echo "  staging:"
    var staging
    echo "  production:"
    var production
} >dsops.yaml
dsops apply -f dsops.yaml >/dev/null
DSOPS_AGENT_TOKEN=$(dsops agent token create --segment default --ttl 10m) \
    dsops-agent enroll --server "$DSOPS_SERVER" --data-dir agent >/dev/null
dsops-agent run --data-dir agent -f dsops.yaml --server "$DSOPS_SERVER" 2>agent.log & pids+=($!)
wait_for "[ \$(dsops agent list --output json | python3 -c 'import json,sys; print(sum(a[\"connected\"] for a in json.load(sys.stdin)))') = 1 ]" 30

step dsops rotate --env production --key API_KEY
dsops rotate --env production --key API_KEY --reason "quarterly"
sleep 3
step dsops promotion status
dsops promotion status
sleep 22
step dsops promotion status
dsops promotion status
step dsops promotion halt --key API_KEY --reason "INC-88: staging errors"
dsops promotion halt --key API_KEY --reason "INC-88: staging errors"
sleep 22
step dsops promotion status
dsops promotion status
step dsops promotion resume API_KEY --reason "INC-88 fixed"
dsops promotion resume API_KEY --reason "INC-88 fixed"
wait_for "dsops promotion status --output json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert all(x[\"state\"] == \"done\" for x in s[\"lines\"][0][\"stages\"])'" 60
step dsops promotion status
dsops promotion status
step dsops audit list --action promotion.
dsops audit list --action promotion.
