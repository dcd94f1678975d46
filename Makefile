# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYPROJECT_SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# What the demo needs (the example model and its three servers), and what the tests need on top: `make demo` on a
# fresh machine installs the first only (about a third of the size: docs/quickstart.md).
DEMO_EXTRAS := examples,fastapi,flask,grpc
DEV_EXTRAS := dev,$(DEMO_EXTRAS)
DEMO_STAMP := $(VENV)/.installed-demo-$(PYPROJECT_SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(PYPROJECT_SUM)

$(DEMO_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	@rm -f $(VENV)/.installed-demo-*
	@touch $(DEMO_STAMP)

$(DEV_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(DEV_EXTRAS)]'
	@rm -f $(VENV)/.installed-*
	@touch $(DEV_STAMP) $(DEMO_STAMP)

install: $(DEV_STAMP)

# The demo goes through the real collector when `make collector` (or `make test`) has built it already;
# otherwise it uses the embedded file exporter (building the collector takes minutes on a fresh machine).
BUILT_COLLECTOR = $(shell p="$${MODELOTEL_CACHE_DIR:-$$HOME/.cache/modelotel}/otelcol-$$(sha256sum collector_config/manifest-core.yaml | cut -c1-16)/otelcol-modelotel"; test -x "$$p" && echo "$$p")

demo: $(DEMO_STAMP)
	MODELOTEL_OTELCOL="$${MODELOTEL_OTELCOL:-$(BUILT_COLLECTOR)}" $(PY) examples/demo.py

lint: install
	$(VENV)/bin/ruff check sdk tests benchmarks examples

# The collector distribution built from collector_config/manifest-core.yaml, cached under
# $HOME/.cache/modelotel/ by the manifest's hash (Go's module and build caches make rebuilds fast).
collector:
	@bash collector_config/build.sh | tail -n 1

# External programs the end-to-end tests run for real: Prometheus/promtool and headless Chromium (Debian
# packages; CI runs as root).
test-deps:
	@missing=""; command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the end-to-end tests:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

test: install lint test-deps
	MODELOTEL_OTELCOL="$$(bash collector_config/build.sh | tail -n 1)" \
	MODELOTEL_JAEGER="$$(bash collector_config/build_jaeger.sh | tail -n 1)" \
	$(PY) -m pytest -q
	@$(MAKE) --no-print-directory test-pythons

# The SDK and evaluator unit suites on the other supported Pythons (all of SUPPORTED_PYTHONS but the main venv's,
# 3.11 on CI); the end-to-end suites (collector, Prometheus, Chromium, real servers, restarts, the wheel: marked
# `e2e` by tests/conftest.py) run on the main venv only. Each version gets a venv cached under
# $HOME/.cache/modelotel/venv-<version>-<hash of pyproject.toml> with the dependencies and the package's metadata
# (entry points, console script) installed; the code under test is this checkout's sdk/, first on the path
# (PYTHONPATH). Interpreters come from pyenv (or PATH); a missing one fails under MODELOTEL_CI=1 and is skipped
# with a message otherwise. Warm, each version takes about 3 minutes on two cores.
SUPPORTED_PYTHONS ?= 3.10 3.11 3.12 3.13
PYPROJECT_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)

test-pythons:
	@main=$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	for v in $(SUPPORTED_PYTHONS); do \
	  if [ "$$v" != "$$main" ]; then bash tests/other_python.sh $$v $(PYPROJECT_HASH) || exit 1; fi; \
	done

bench: install
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk || echo "wrk not installed: the load test will be skipped")
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/middleware.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
