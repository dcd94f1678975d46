"""What the evaluator writes: ``text`` (table and JSON of a verdict), ``report`` (HTML, with ``svg`` charts),
``rules`` (Prometheus recording and alerting rules), ``dashboard`` (Grafana JSON) and ``exposition`` (``serve``'s
Prometheus text)."""
