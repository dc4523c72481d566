#!/usr/bin/env bash
# The gate: formatting, the crate boundaries (scripts/boundaries.sh), clippy with warnings as errors, the whole test suite against real
# servers (with the deployment validators and the chaos run), 30 s of each fuzz target
# (scripts/fuzz.sh), and the documentation build. It changes no file of the repository (it may install
# missing Debian packages and starts temporary servers, as scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> crate boundaries" >&2
scripts/boundaries.sh
echo "==> cargo clippy -D warnings" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> tests" >&2
scripts/test.sh
echo "==> fuzz targets, 30 s each" >&2
scripts/fuzz.sh --seconds "${DSOPS_FUZZ_SECONDS:-30}"
echo "==> cargo doc" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
echo "==> gate passed" >&2
