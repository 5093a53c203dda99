#!/usr/bin/env bash
# Idempotently creates .venv/ in the repository root with the Python tools of
# scripts/requirements-dev.txt (moto[server], cfn-lint, cargo-lambda). Does nothing when the
# stamp for the current requirements is present. Quiet unless something fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/scripts/requirements-dev.txt"

hash="$(sha256sum "$req" | cut -c1-16)"
stamp="$venv/.stamp-$hash"

if [[ -f "$stamp" && -x "$venv/bin/python" ]]; then
    exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "ensure-venv: $python not found; install python3" >&2
    exit 1
fi

make_venv() {
    rm -rf "$venv"
    "$python" -m venv "$venv" >/dev/null
}

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import pip' 2>/dev/null; then
    : # reuse the existing venv; pip brings it to the new requirements
elif ! make_venv 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately (python3-venv).
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        echo "ensure-venv: python3 -m venv failed; installing python3-venv" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq python3-venv >/dev/null
        make_venv
    else
        echo "ensure-venv: '$python -m venv' failed; install python3-venv" >&2
        make_venv # once more, so its error is shown
    fi
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
rm -f "$venv"/.stamp-*
"$venv/bin/python" -m pip install --quiet --requirement "$req"
touch "$stamp"
