"""``modelotel serve``: the streaming SLO evaluator, an OTLP receiver that a collector exports to.

    modelotel serve --slo slo.yaml [--host 127.0.0.1] [--grpc-port 4317] [--http-port 4318] [--metrics-port 9464]
                    [--state DIR] [--evaluate-every 10s] [--otlp-endpoint URL]
                    [--max-series 50000] [--max-connections 64] [--request-timeout 30s] [--max-request-bytes 4MiB]

Data flows one way: receivers (grpc.py: OTLP/gRPC ``MetricsService/Export``; http.py: OTLP/HTTP
``POST /v1/metrics``, protobuf or JSON, optionally gzip) -> receiver.py ``Receiver`` -> ``engine.stream.StreamState``
(the file reader's decoder, one ledger per SLO) -> every ``--evaluate-every`` (service.py): an evaluation at the
current time -> outputs:

* ``GET /metrics``: Prometheus text exposition (outputs/exposition.py) of the latest evaluation
  (``modelotel_slo_*``) and of the receiver itself (``modelotel_serve_*``);
* OTLP gauges (``modelotel.slo.*``) to ``--otlp-endpoint`` through the OpenTelemetry SDK, when given (export.py);
* ``GET /status[?at=TIME]``: the JSON document of ``modelotel evaluate --format json``, evaluated on request
  (at ``TIME``: ``now``, epoch seconds or ISO 8601; default now);
* ``GET /healthz``: ``ok``.

State is snapshotted to ``--state DIR`` every ``--snapshot-every`` and on SIGTERM/SIGINT, and restored at
start-up (stream.py describes the format and its guarantees). SIGTERM/SIGINT stop the receivers, export and
snapshot a last time; ``run`` returns, or raises ``StateNotSaved`` when that last snapshot cannot be written
(errors.py: the typed errors, which the CLI maps to its exit codes). A bad request body is answered
(HTTP 400, gRPC INVALID_ARGUMENT) and counted; it never stops the server.

Options and their checks are in options.py (the flags are the CLI's). Limits (docs/serve.md "Limits"): at
most ``--max-series`` series (points of new ones are refused as a partial success and counted); per HTTP port at
most ``--max-connections`` connections, one thread each, every request read within ``--request-timeout`` (a
connection still sending its request past it, or the one sending longest when a new connection finds no free
slot, is closed and counted: slow clients cannot starve /status); a body shorter than its Content-Length is a 400
and counts nothing; a client that goes away is one counted log line. Requests over ``--max-request-bytes`` are
refused (413, RESOURCE_EXHAUSTED) and at most two such requests' bytes are read or decoded at once
(admission.py): memory follows the limits, not the load. gRPC calls are served by grpc.GRPC_WORKERS threads,
each call's message must arrive within ``--request-timeout``, and idle or old connections are closed.
docs/serve.md is the user guide.
"""

from __future__ import annotations

from .errors import ServeError, StateNotSaved
from .options import Options, parse_options
from .service import Service, run

__all__ = ["Options", "ServeError", "Service", "StateNotSaved", "parse_options", "run"]
