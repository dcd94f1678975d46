#!/usr/bin/env bash
# Build a pinned Jaeger v2 (the OpenTelemetry-Collector-based `jaeger` binary) from its released Go
# module, cached outside the clone, for the end-to-end tests (tests/e2e/test_collector_jaeger.py).
#
#   bash collector_config/build_jaeger.sh            # prints the binary path as its LAST stdout line
#   MODELOTEL_JAEGER="$(bash collector_config/build_jaeger.sh | tail -n1)"
#
# Version: Jaeger v2's Go module is github.com/jaegertracing/jaeger (no /v2 suffix), so its v2.x.y
# git tags are not valid module versions; each v2 release up to v2.13.0 was also tagged v1.(x+63).y
# on the same commit, and that tag is what Go can fetch. The pin below is module v1.76.0 =
# Jaeger v2.13.0 (commit 63b27e1810a7, 2025-12-03), the newest the module proxy serves here: v1.77.0+,
# v2.x.y(+incompatible), commit hashes and pseudo-versions of the v2.14.0..v2.20.0 commits all
# answer "403 This module version is not available".
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@v1.76.0` cannot work (Go refuses
# `install pkg@version` for modules whose go.mod has replace directives; Jaeger's replaces sarama),
# so the module is fetched with `go mod download` and ./cmd/jaeger built in a copy of it.
#
# - MODELOTEL_JAEGER_VERSION (module version) and MODELOTEL_JAEGER_RELEASE (the Jaeger v2 release
#   name stamped into `jaeger version`) override the pin;
# - output: ${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}/jaeger-<module version>/jaeger;
#   reused (prints "reused") when that binary exists;
# - Go's own module and build caches are used (GOMODCACHE / GOCACHE);
# - runs under `nice -n 10` (shared machine); concurrent runs are safe: one flock per output dir,
#   the install goes to a .partial dir renamed into place only once the binary runs;
# - progress on stderr; exits non-zero with a clear message on failure (log kept next to the dir).
set -euo pipefail

JAEGER_MODULE="github.com/jaegertracing/jaeger"
JAEGER_VERSION="${MODELOTEL_JAEGER_VERSION:-v1.76.0}"
pinned_commit=""
if [ "$JAEGER_VERSION" = "v1.76.0" ]; then
  JAEGER_RELEASE="${MODELOTEL_JAEGER_RELEASE:-v2.13.0}"
  pinned_commit="63b27e1810a710ac54dc4522da0538e540bdc545"  # tags v1.76.0 and v2.13.0
else
  JAEGER_RELEASE="${MODELOTEL_JAEGER_RELEASE:-$JAEGER_VERSION}"
fi
CACHE_DIR="${MODELOTEL_CACHE_DIR:-$HOME/.cache/modelotel}"

log() { printf 'build_jaeger: %s\n' "$*" >&2; }
die() { printf 'build_jaeger: ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "'go' not found on PATH (Go >= 1.24 is needed)"
command -v flock >/dev/null 2>&1 || die "'flock' not found (util-linux)"
case "$JAEGER_VERSION" in
  v[0-9]*) ;;
  *) die "MODELOTEL_JAEGER_VERSION=$JAEGER_VERSION is not a module version (vX.Y.Z)" ;;
esac

out="$CACHE_DIR/jaeger-$JAEGER_VERSION"
bin="$out/jaeger"
mkdir -p "$CACHE_DIR"

if [ -x "$bin" ]; then
  log "reused $bin"
  echo "reused"
  echo "$bin"
  exit 0
fi

exec 9>"$out.lock"
if ! flock -n 9; then
  log "another install of $out is running; waiting for its lock"
  flock 9
fi
if [ -x "$bin" ]; then  # finished by the run we waited for
  log "reused $bin (built concurrently)"
  echo "reused"
  echo "$bin"
  exit 0
fi

partial="$out.partial"
logfile="$out.build.log"
rm -rf "$partial"
mkdir -p "$partial"

# `go install $JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION` is refused by Go itself: Jaeger's go.mod
# has a replace directive (github.com/Shopify/sarama => v1.33.0), which `go install pkg@version`
# does not allow. So: download the module (same proxy, same checksum database), and build
# ./cmd/jaeger inside an unpacked copy of it, as the main module, with its own go.mod/go.sum.
src="$(mktemp -d "${TMPDIR:-/tmp}/modelotel-jaeger-src.XXXXXX")"
trap 'chmod -R u+w "$src" 2>/dev/null; rm -rf "$src"' EXIT

log "downloading $JAEGER_MODULE@$JAEGER_VERSION (Jaeger $JAEGER_RELEASE)"
log "log: $logfile"
start=$(date +%s)
if ! GOTOOLCHAIN=local go mod download -json "$JAEGER_MODULE@$JAEGER_VERSION" >"$src/download.json" 2>"$logfile"; then
  cat "$src/download.json" "$logfile" >&2 || true
  rm -rf "$partial"
  die "go mod download $JAEGER_MODULE@$JAEGER_VERSION failed (a 403 means the module proxy refuses this version: pick another MODELOTEL_JAEGER_VERSION)"
fi
moddir="$(sed -n 's/^[[:space:]]*"Dir": *"\(.*\)",*$/\1/p' "$src/download.json" | head -n1)"
# The proxy's .info carries the commit (Origin.Hash) for some versions only.
commit="$(sed -n 's/^[[:space:]]*"Hash": *"\([0-9a-f]*\)",*$/\1/p' "$src/download.json" | head -n1)"
commit="${commit:-$pinned_commit}"
[ -n "$moddir" ] && [ -f "$moddir/go.mod" ] || die "go mod download gave no module directory (see $src/download.json)"
cp -r "$moddir" "$src/jaeger"
chmod -R u+w "$src/jaeger"  # the module cache is read-only

# Jaeger's own Makefile stamps these (scripts/makefiles/BuildInfo.mk); without them
# `jaeger version` reports empty strings.
ldflags="-s -w"
ldflags+=" -X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_RELEASE"
ldflags+=" -X $JAEGER_MODULE/internal/version.commitSHA=${commit:-unknown}"
# The release's commit time (as Jaeger's Makefile does), not now: rebuilds stay byte-identical.
info_file="$(sed -n 's/^[[:space:]]*"Info": *"\(.*\)",*$/\1/p' "$src/download.json" | head -n1)"
released="$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$info_file" 2>/dev/null | head -n1)"
ldflags+=" -X $JAEGER_MODULE/internal/version.date=${released:-unknown}"

log "building ./cmd/jaeger into $out"
set +e
# GOTOOLCHAIN=local: never download another Go toolchain; fail instead. -mod=readonly: build with
# exactly the go.mod/go.sum Jaeger released.
( cd "$src/jaeger" && CGO_ENABLED=0 GOTOOLCHAIN=local nice -n 10 \
    go build -mod=readonly -trimpath -buildvcs=false -ldflags="$ldflags" -o "$partial/jaeger" ./cmd/jaeger ) \
  2>&1 | tee -a "$logfile" >&2
rc=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - start ))

if [ "$rc" -ne 0 ] || [ ! -x "$partial/jaeger" ]; then
  rm -rf "$partial"
  if grep -q "403" "$logfile"; then
    log "the Go module proxy refused a module (403): pick another MODELOTEL_JAEGER_VERSION"
  fi
  die "go build of $JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION failed (exit $rc) after ${elapsed}s; full log: $logfile"
fi

"$partial/jaeger" version >"$partial/VERSION" 2>&1 || {
  rm -rf "$partial"
  die "the installed jaeger binary does not run ('jaeger version' failed)"
}
{
  echo "module=$JAEGER_MODULE@$JAEGER_VERSION (./cmd/jaeger)"
  echo "release=$JAEGER_RELEASE"
  echo "commit=${commit:-unknown}"
  echo "go=$(go env GOVERSION)"
  echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "build_seconds=$elapsed"
} >"$partial/BUILD_INFO"
rm -rf "$out"
mv "$partial" "$out"
log "built $bin in ${elapsed}s"
echo "$bin"
