"""Judging: deltas -> ledgers (``ledger``) -> verdicts (``verdict``: SLIs, budgets, burn rates, alerts).

``batch`` runs the pipeline once over files or a Prometheus range (``modelotel evaluate``); ``stream`` keeps the
same ledgers rolling for ``modelotel serve``; ``diagnose`` explains why a selector matched nothing.
``from modelotel.evaluator import engine; engine.evaluate(...)`` is the batch entry point.
"""

from .batch import Evaluation, NoData, Sink, evaluate, judge, lookback, resolution_for

__all__ = ["Evaluation", "NoData", "Sink", "evaluate", "judge", "lookback", "resolution_for"]
