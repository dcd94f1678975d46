"""`import modelotel` (all `@instrument_model` needs) loads only what a serving process needs.

The evaluator, the CLI, the server integrations and their frameworks, YAML, the data-frame libraries and the
DDSketch interop are loaded when used, never by the import: a model server pays for numpy, the OpenTelemetry API
and SDK (metrics, traces, resources) and the package's own SDK modules. The OTLP encoders (protobuf) load when the
export pipeline starts, at the first decorated call; the rest never loads in a serving process.

Measured with `python -X importtime -c "import modelotel"` on the 2-core CI machine (best of 5, Python 3.11):
before issue 16 the import took about 240 ms cumulative (numpy ~45 ms, the OTel metrics SDK ~35 ms) and pulled
ddsketch; the numbers now are in the issue's report.
"""

from __future__ import annotations

import subprocess
import sys

# Module prefixes a process that only decorates a function must not load on `import modelotel`.
NOT_AT_IMPORT = (
    "modelotel.evaluator",
    "modelotel.cli",
    "modelotel.integrations",
    "grpc",
    "yaml",
    "orjson",
    "pandas",
    "polars",
    "pyarrow",
    "scipy",
    "sklearn",
    "fastapi",
    "starlette",
    "uvicorn",
    "flask",
    "werkzeug",
    "requests",
    "urllib3",
    "http.server",
    "asyncio",
    "zstandard",
    "ddsketch",
)
# ... and what the export pipeline loads when it starts (the OTLP encoders), not at import.
EXPORT_ONLY = ("google.protobuf", "opentelemetry.proto", "opentelemetry.exporter")

# What `@instrument_model` legitimately needs: the arrays it summarises and the OpenTelemetry SDK it records into.
NEEDED = ("numpy", "opentelemetry.sdk.metrics", "opentelemetry.trace", "modelotel.instrument")


def loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.split()


def offending(modules: list[str], prefixes: tuple[str, ...] = NOT_AT_IMPORT) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_import_modelotel_loads_nothing_a_serving_process_does_not_need():
    modules = loaded_after("import modelotel")
    assert offending(modules, NOT_AT_IMPORT + EXPORT_ONLY) == []
    for name in NEEDED:
        assert name in modules, f"{name} not loaded: is NEEDED stale?"


def test_decorating_and_calling_a_model_loads_nothing_more():
    code = (
        "import os, tempfile\n"
        "os.environ['MODELOTEL_EXPORT_FILE'] = os.path.join(tempfile.mkdtemp(), 't.jsonl')\n"
        "import modelotel\n"
        "@modelotel.instrument_model('m', '1')\n"
        "def predict(x):\n"
        "    return [0.2, 0.8]\n"
        "predict([1.0, 2.0])\n"
    )
    assert offending(loaded_after(code)) == []
