"""modelotel's own failures and drops (``SELF``): counted, logged once each kind, never raised."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import modelotel.conventions as conv

_log = logging.getLogger("modelotel")


class SelfTelemetry:
    """Counts of modelotel's own failures and drops; logs each kind once. Never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._logged: set[str] = set()

    def error(self, kind: str, exc: BaseException | None = None) -> None:
        try:
            with self._lock:
                self.errors[kind] += 1
                first = kind not in self._logged
                self._logged.add(kind)
            if first:
                _log.warning(
                    "modelotel: internal error (%s), counted in %s and not raised: %s",
                    kind,
                    conv.INTERNAL_ERRORS,
                    type(exc).__name__ if exc is not None else "-",
                )
        except Exception:  # pragma: no cover - the last line of defence must not raise
            pass

    def drop(self, reason: str, count: int = 1, message: str | None = None, log_key: str | None = None) -> None:
        """Count ``count`` dropped values under ``reason``; log the first per ``log_key`` (default: the reason)."""
        if count <= 0:
            return
        key = reason if log_key is None else log_key
        try:
            with self._lock:
                self.drops[reason] += count
                first = key not in self._logged
                self._logged.add(key)
            if first:
                _log.warning(
                    "modelotel: dropped %d value(s) (%s), counted in %s%s",
                    count,
                    reason,
                    conv.DROPPED,
                    f": {message}" if message else "",
                )
        except Exception:  # pragma: no cover
            pass

    def warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            if kind in self._logged:
                return
            self._logged.add(kind)
        _log.warning("modelotel: %s", message)

    def take(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            errors, drops = self.errors, self.drops
            self.errors, self.drops = Counter(), Counter()
        return errors, drops


SELF = SelfTelemetry()
