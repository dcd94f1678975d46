# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint bench clean collector test-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,fastapi,flask,grpc]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The demo goes through the real collector when `make collector` (or `make test`) has built it already;
# otherwise it uses the embedded file exporter (building the collector takes minutes on a fresh machine).
BUILT_COLLECTOR = $(shell p="$${MODELOTEL_CACHE_DIR:-$$HOME/.cache/modelotel}/otelcol-$$(sha256sum collector_config/manifest-core.yaml | cut -c1-16)/otelcol-modelotel"; test -x "$$p" && echo "$$p")

demo: install
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

bench: install
	@command -v wrk >/dev/null || (apt-get install -y -qq wrk || echo "wrk not installed: the load test will be skipped")
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/middleware.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
