"""Reading progress on stderr, for any run that takes more than a moment.

Nothing for the first PROGRESS_AFTER_S seconds (most runs end before: no noise). Then, on a terminal, a bar
redrawn in place at most every BAR_EVERY_S (``\\r``: percent, amount read of the total, rate, time left), fitted to
the terminal's width and erased when the run ends; off a terminal (a CI log, a pipe), a plain line every
LINE_EVERY_S and a last one when the run ends. Amounts are bytes for files and queries for a Prometheus URL (the
sources report ``(done, total)`` about every 0.25 s and once at the end of a file).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

PROGRESS_AFTER_S = 2.0
BAR_EVERY_S = 0.2
LINE_EVERY_S = 5.0
BAR_WIDTH = 20
ERASE_LINE = "\r\x1b[K"


def human_seconds(s: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: a time left, to the second below an hour."""
    s = max(0, math.ceil(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def amount(done: float, total: float, queries: bool) -> str:
    if queries:
        return f"{done:,.0f}/{total:,.0f} queries" if total else f"{done:,.0f} queries"
    return f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB" if total else f"{done / 1e6:,.1f} MB"


class Progress:
    """``progress(source, done, total)`` as ``engine.evaluate`` calls it; ``close()`` when the reading is over."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic, tty: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.started = self.last_call = clock()
        self.source_started = self.started
        self.last_shown = -math.inf
        self.state: tuple[str, int, int] | None = None
        self.bar_drawn = False
        self.lines_shown = False

    def __call__(self, source: str, done: int, total: int) -> None:
        now = self.clock()
        if self.state is None or self.state[0] != source:
            self.source_started = self.last_call  # the previous input ended about when this one began
        self.state = (source, done, total)
        self.last_call = now
        if now - self.started < PROGRESS_AFTER_S:
            return
        if now - self.last_shown < (BAR_EVERY_S if self.tty else LINE_EVERY_S):
            return
        self.last_shown = now
        self.show(now)

    def text(self, now: float, bar: bool) -> tuple[str, str]:
        """(the figures, the source) of the latest call."""
        assert self.state is not None
        source, done, total = self.state
        from ..evaluator.sources import is_url

        queries = is_url(source)
        elapsed = max(now - self.source_started, 1e-6)
        rate = done / elapsed
        speed = f"{rate:,.1f} queries/s" if queries else f"{rate / 1e6:,.1f} MB/s"
        parts = []
        if total > 0:
            fraction = min(done / total, 1.0)
            parts.append(f"{fraction:4.0%}")
            if bar:
                filled = round(BAR_WIDTH * fraction)
                parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        parts += [amount(done, total, queries), speed]
        if total > 0 and done < total and rate > 0:
            parts.append(f"ETA {human_seconds((total - done) / rate)}")
        elif total > 0 and done >= total:
            parts.append(f"in {human_seconds(round(elapsed))}")
        return "  ".join(parts), source

    def show(self, now: float) -> None:
        if self.tty:
            stats, source = self.text(now, bar=True)
            room = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line could not be redrawn in place
            name_room = max(room - len(stats) - len("reading   "), 8)
            if len(source) > name_room:
                source = "..." + source[-(name_room - 3) :]
            self.stream.write(f"{ERASE_LINE}reading {source}  {stats}"[: room + len(ERASE_LINE)])
            self.bar_drawn = True
        else:
            stats, source = self.text(now, bar=False)
            self.stream.write(f"reading {source}: {stats}\n")
            self.lines_shown = True
        self.stream.flush()

    def close(self) -> None:
        """The bar erased (what follows prints where it was); off a terminal, a last line once lines were shown."""
        if self.bar_drawn:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
        elif self.lines_shown and self.state is not None:
            self.show(self.clock())
