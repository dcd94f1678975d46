#!/usr/bin/env bash
# Runs the SDK and evaluator unit suites (pytest -m "not e2e") on Python $1, in a venv cached by the hash $2 of
# pyproject.toml under ${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}/venv-$1-$2. Used by `make test-pythons`.
set -euo pipefail
version=$1
hash=$2
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}
venv=$cache/venv-$version-$hash

find_python() {
    local p
    if command -v pyenv >/dev/null 2>&1; then
        # the newest installed patch release of $version
        for p in $(ls -d "$(pyenv root)/versions/$version".* 2>/dev/null | sort -V -r); do
            [[ -x $p/bin/python$version ]] && { echo "$p/bin/python$version"; return; }
        done
    fi
    command -v "python$version" 2>/dev/null || true
}

if [[ ! -x $venv/bin/python ]] || [[ ! -e $venv/.installed ]]; then
    python=$(find_python)
    if [[ -z $python ]]; then
        if [[ -n ${MODELOTEL_CI:-} ]]; then
            echo "Python $version not found (pyenv install $version)" >&2
            exit 1
        fi
        echo "Python $version not found (pyenv install $version): its unit suites are skipped"
        exit 0
    fi
    echo "Python $version: creating $venv (once per pyproject.toml)"
    # this version's venvs for older pyproject.toml files are stale: one per version stays in the cache
    rm -rf "$venv" "$cache/venv-$version-"*
    mkdir -p "$cache"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    # a copy of the package sources, so the build leaves nothing in the checkout
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    cp -r "$root/pyproject.toml" "$root/README.md" "$src/"
    mkdir "$src/sdk"
    (cd "$root/sdk" && tar --exclude='*.egg-info' --exclude=__pycache__ -cf - modelotel) | (cd "$src/sdk" && tar xf -)
    "$venv/bin/python" -m pip install --quiet "$src[dev,fastapi,flask,grpc]"
    touch "$venv/.installed"
fi

start=$(date +%s)
cd "$root"
PYTHONPATH="$root/sdk${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not e2e"
echo "Python $version: unit suites passed in $(( $(date +%s) - start )) s"
