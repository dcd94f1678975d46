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

demo: install
	$(PY) examples/quickstart.py

lint: install
	$(VENV)/bin/ruff check sdk tests benchmarks examples

# The collector distribution built from collector_config/manifest-core.yaml, cached under
# $HOME/.cache/modelotel/ by the manifest's hash (Go's module and build caches make rebuilds fast).
collector:
	@bash collector_config/build.sh | tail -n 1

# External servers the end-to-end tests run for real (Debian packages; CI runs as root).
test-deps:
	@command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus (end-to-end tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

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
