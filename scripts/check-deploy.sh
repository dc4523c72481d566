#!/usr/bin/env bash
# Validates the deployment artefacts in deploy/ with tools nobody here wrote:
#   hadolint            deploy/container/Dockerfile (every rule, style included)
#   kubernetes-validate deploy/kubernetes/*.yaml, strict, against the Kubernetes schema of
#                       the pinned release (1.37)
#   check-jsonschema    the GitHub Action and example workflow (the schemas it vendors from
#                       SchemaStore), the compose file (the Compose Specification's schema)
#   systemd-analyze     deploy/systemd/*.service (`verify`, any complaint fails)
# The dsops.yaml files under deploy/ are checked by `cargo test` (cli/tests/t90_deploy_files.rs).
# Installs what is missing (scripts/lib.sh). Exits non-zero at the first artefact that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_packages systemd:systemd-analyze python3:python3
ensure_python_tools
bin=$(dirname "$DSOPS_TEST_PYTHON")

echo "==> hadolint deploy/container/Dockerfile" >&2
"$bin/hadolint" --failure-threshold style --no-color deploy/container/Dockerfile

echo "==> kubernetes-validate deploy/kubernetes (1.37, strict)" >&2
"$bin/kubernetes-validate" --kubernetes-version 1.37.0 --strict --quiet deploy/kubernetes/*.yaml

echo "==> check-jsonschema: GitHub Action, workflow, compose" >&2
"$bin/check-jsonschema" --builtin-schema vendor.github-actions deploy/github-action/action.yml
"$bin/check-jsonschema" --builtin-schema vendor.github-workflows deploy/github-action/example-workflow.yml
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml

echo "==> systemd-analyze verify deploy/systemd" >&2
# `verify` wants the units' programs and the system's targets: a scratch root with stubs of the
# binaries and copies of this machine's targets and slices (their .wants links left out).
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd/system"
cp -L /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice "$root/usr/lib/systemd/system/" 2>/dev/null || true
for program in dsops-server dsops-agent; do
    printf '#!/bin/sh\n' > "$root/usr/local/bin/$program"
    chmod +x "$root/usr/local/bin/$program"
done
units=()
for unit in deploy/systemd/*.service; do
    cp "$unit" "$root/etc/systemd/system/"
    units+=("$root/etc/systemd/system/$(basename "$unit")")
done
complaints=$(systemd-analyze verify --root="$root" "${units[@]}" 2>&1) || { echo "$complaints" >&2; exit 1; }
if [ -n "$complaints" ]; then
    echo "$complaints" >&2
    echo "systemd-analyze verify complained about the units above" >&2
    exit 1
fi
echo "==> deployment artefacts valid" >&2
