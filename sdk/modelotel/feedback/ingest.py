"""Judging a labels file's rows (``labels_file.py``) and accounting for every one of them.

Each good row goes through ``record.judge`` like a ``record_feedback`` call (same checks, same drop reasons in
``modelotel.dropped``); a row that cannot be judged is counted under its reason (the row's own problem, such as
``missing_label``, or the ``FeedbackRefused`` reason, such as ``feedback_id_forged``). Nothing is skipped without a
count: ``read == recorded + refused``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .labels_file import Row
from .record import FeedbackRefused, judge

FIRST_WHERE_KEPT = 5  # locations kept per reason for the summary (every one goes to the errors sink)


@dataclass
class ReasonTally:
    count: int = 0
    first: list[int] = field(default_factory=list)
    message: str = ""  # the first row's message


@dataclass
class IngestSummary:
    """Rows read, recorded (and the items they judged: a batch prediction's row judges each of its items) and
    refused, by reason in the order first seen."""

    read: int = 0
    recorded: int = 0
    items: int = 0
    reasons: dict[str, ReasonTally] = field(default_factory=dict)

    @property
    def refused(self) -> int:
        return sum(t.count for t in self.reasons.values())

    def refuse(self, where: int, reason: str, message: str) -> None:
        tally = self.reasons.get(reason)
        if tally is None:
            tally = self.reasons[reason] = ReasonTally(message=message)
        tally.count += 1
        if len(tally.first) < FIRST_WHERE_KEPT:
            tally.first.append(where)


BadRowSink = Callable[[int, str, str], Any]  # (line or row, reason, message)


def ingest(
    rows: Iterable[Row],
    *,
    positive_label: Any = None,
    on_bad_row: BadRowSink | None = None,
    on_row: Callable[[IngestSummary], Any] | None = None,
    summary: IngestSummary | None = None,
) -> IngestSummary:
    """Judge every row; ``on_bad_row`` sees each refused one, ``on_row`` the summary after each row (progress).
    ``summary``: counts into this one (so a caller still has the counts when reading the file fails midway)."""
    summary = summary if summary is not None else IngestSummary()
    for row in rows:
        summary.read += 1
        problem = row.problem
        if problem is None:
            try:
                summary.items += judge(
                    row.prediction_id,
                    label=row.label,
                    correct=row.correct,
                    group=row.group,
                    positive_label=positive_label,
                    at=row.at,
                )
                summary.recorded += 1
            except FeedbackRefused as refused:
                problem = (refused.reason, str(refused))
        if problem is not None:
            summary.refuse(row.where, *problem)
            if on_bad_row is not None:
                on_bad_row(row.where, *problem)
        if on_row is not None:
            on_row(summary)
    return summary
