#!/usr/bin/env bash
# Builds (once) the virtual environment of a model server and prints its path on the last line of stdout.
# $1 names tests/servers/$1.txt, the server's requirements; the venv is cached under
# ${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}/server-$1-<hash of that file and of modelotel's dependencies in
# pyproject.toml and of the Python>, so a warm run reuses it. Model servers pin their own FastAPI and protobuf
# ranges: they never go into the main venv. modelotel's own dependencies are installed from pyproject.toml (pip
# resolves them with the server's); its sources come from PYTHONPATH at run time. MODELOTEL_SERVER_PYTHON: the
# Python to build with (default python3).
set -euo pipefail
name=$1
root=$(cd "$(dirname "$0")/.." && pwd)
reqs=$root/tests/servers/$name.txt
if [[ ! -f $reqs ]]; then
    echo "no requirements for server $name: $reqs does not exist" >&2
    exit 2
fi
cache=${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}
python=${MODELOTEL_SERVER_PYTHON:-python3}
deps=$("$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$root/pyproject.toml")
hash=$( (cat "$reqs"; echo "$deps"; "$python" -V) | sha256sum | cut -c1-16)
venv=$cache/server-$name-$hash

if [[ ! -x $venv/bin/python ]] || [[ ! -e $venv/.installed ]]; then
    mkdir -p "$cache"
    exec 9>"$venv.lock"
    flock 9
    if [[ ! -e $venv/.installed ]]; then
        start=$(date +%s)
        # venvs for older requirements are stale: one per server stays in the cache
        for old in "$cache/server-$name-"*; do
            [[ $old == "$venv.lock" ]] || rm -rf "$old"
        done
        "$python" -m venv "$venv" >&2
        "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
        # the server's requirements and modelotel's together, so pip resolves one consistent set
        "$venv/bin/python" -m pip install --quiet -r "$reqs" $deps >&2
        echo "built in $(( $(date +%s) - start )) s, $(du -sm "$venv" | cut -f1) MB" > "$venv/.installed"
        cat "$venv/.installed" >&2
    fi
fi
echo "$venv"
