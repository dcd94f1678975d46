"""The SLO evaluator, its folders in data-flow order. ``spec`` reads SLO files (native YAML, OpenSLO, Sloth) into
the objects of ``slo`` (``units``, ``semconv`` and ``durations`` are the shared vocabulary); ``sources`` reads the
telemetry (the collector's OTLP JSON lines files through ``sources.otlp_file``'s decoder, or a Prometheus range)
into deltas: per-series increments with their sketches; ``engine`` bins the deltas of each SLO's metric into a
``ledger`` and turns it into a ``verdict`` (SLI, error budget, burn rates, alerts), once over files (``batch``,
``modelotel evaluate``) or rolling as requests arrive (``stream``, under ``serve``); ``quality`` computes the model
statistics (drift, calibration, fairness, A/B comparison) from the same deltas; ``outputs`` renders the results
(table and JSON, HTML report, Prometheus rules, Grafana dashboard); ``serve`` is the long-running receiver with its
HTTP API. Lower folders never import higher ones, the evaluator uses only ``_version``, ``conventions``, ``config``
and ``sketch`` of the SDK, and only ``modelotel.cli`` turns flags into calls and errors into exit codes.
"""
