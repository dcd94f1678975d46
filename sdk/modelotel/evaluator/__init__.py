"""The SLO evaluator: specs (native YAML, OpenSLO) -> sources (OTLP JSON lines, Prometheus) -> ledgers ->
SLIs, error budgets, burn rates and alerts -> table / JSON / exit code.

Pipeline modules, in data-flow order: ``model`` (the SLO objects), ``spec`` / ``openslo`` (parsing),
``points`` / ``sources`` / ``otlp_source`` / ``prometheus_source`` / ``cumulative`` (reading), ``ledger``
(time-binned good/total events), ``budget`` (verdicts), ``engine`` (the pipeline), ``output`` (rendering).
"""
