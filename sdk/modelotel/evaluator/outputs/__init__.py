"""What the evaluator writes: ``text`` (table and JSON of a verdict), ``report`` (HTML, with ``svg`` charts),
``rules`` (Prometheus recording and alerting rules) and ``dashboard`` (Grafana JSON)."""
