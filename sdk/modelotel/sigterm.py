"""Export on SIGTERM, then let the signal do what it would have done.

SIGTERM is how ``docker stop``, systemd and Kubernetes stop a process, and Python's default action for it
kills the process without running atexit: everything recorded since the last export would be lost. Where
modelotel runs (configure(), a decorated model, a server middleware), ``install`` puts ``handle_sigterm`` in
front of the current disposition, from the main thread only (Python allows no other). The handler:

* asks a flusher thread, started with the export pipeline (``start_flusher``), to export, and waits for it at
  most ``SIGTERM_FLUSH_TIMEOUT_S``: the handler runs in the main thread between two bytecodes, possibly while
  that thread holds a lock the export needs (or the threading module's own, inside ``Thread.start``, which a
  werkzeug server calls per request), so it neither exports inline nor starts a thread; it touches only two
  Events of its own, and waiting with a bound cannot deadlock;
* then chains: it calls the previous Python handler, or, when the previous disposition was the default
  action, restores it and sends SIGTERM again, so the process still dies with SIGTERM's status;
* never swallows the signal. A second SIGTERM that arrives during the export skips it and chains at once;
* when the signal interrupts shutdown()'s own final export (a multiprocessing worker ending normally just
  as Pool.terminate() signals it), killing the process there would lose that export: the handler lets it
  finish (``final_export``) and chains right after it; from another thread, it waits for it, bounded.

A SIGTERM that was ignored (SIG_IGN) or handled outside Python stays untouched. A server that installs its
own handler later (uvicorn, gunicorn workers) replaces this one: they stop gracefully and exit normally
(atexit runs shutdown()) or, in uvicorn's case, restore the handler they found and raise SIGTERM again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .config import SIGTERM_FLUSH_TIMEOUT_S
from .metrics.selftelemetry import SELF

_previous: Any = None  # the disposition handle_sigterm chains to
_flush: Callable[[float], Any] | None = None
_flushing = False  # an export started by a SIGTERM is running: a second SIGTERM does not wait for it
_flusher: threading.Thread | None = None
_flusher_pid = 0  # the process whose thread _flusher is (a forked child has none until it starts its own)
_flush_requested = threading.Event()
_flush_done = threading.Event()
# Installed once per process: a handler installed after ours (uvicorn's, gunicorn's) took SIGTERM over on
# purpose, and installing again in front of it would chain it to us and us to it (uvicorn restores ours at
# its end and raises SIGTERM again: that loop would swallow the signal).
_installed_once = False


_final_export_owner: int | None = None  # the thread running shutdown()'s final export
_final_export_done = threading.Event()
_pending: tuple[int, Any] | None = None  # a SIGTERM that arrived during the main thread's final export


@contextlib.contextmanager
def final_export() -> Iterator[None]:
    """Around shutdown()'s export: a SIGTERM arriving meanwhile takes effect after it, not in its middle."""
    global _final_export_owner, _pending
    _final_export_done.clear()
    _final_export_owner = threading.get_ident()
    try:
        yield
    finally:
        _final_export_owner = None
        _final_export_done.set()
        pending, _pending = _pending, None
        if pending is not None:
            _chain(*pending)


def install() -> bool:
    """Put handle_sigterm in front of SIGTERM's current disposition; True when it is (or already was) there.

    Outside the main thread, and when SIGTERM is ignored or handled by non-Python code, nothing is installed.
    """
    global _previous, _installed_once
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is handle_sigterm:
            return True
        if _installed_once or current is None or current == signal.SIG_IGN:
            return False
        _previous = current
        signal.signal(signal.SIGTERM, handle_sigterm)
        _installed_once = True
        return True
    except (ValueError, OSError) as exc:  # e.g. an embedded interpreter without signal support
        SELF.error("sigterm_install", exc)
        return False


def uninstall() -> None:
    """Give SIGTERM back its previous disposition if handle_sigterm is still the one installed."""
    global _installed_once
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is handle_sigterm:
            signal.signal(signal.SIGTERM, _previous if _previous is not None else signal.SIG_DFL)
            _installed_once = False
    except (ValueError, OSError) as exc:
        SELF.error("sigterm_uninstall", exc)


def installed() -> bool:
    return signal.getsignal(signal.SIGTERM) is handle_sigterm


def start_flusher(flush: Callable[[float], Any]) -> None:
    """Start this process's flusher thread (once; again in a forked child), which exports on request."""
    global _flusher, _flusher_pid, _flush, _flush_requested, _flush_done
    _flush = flush
    if _flusher is not None and _flusher_pid == os.getpid() and _flusher.is_alive():
        return
    _flush_requested, _flush_done = threading.Event(), threading.Event()  # none inherited mid-use from a parent
    _flusher = threading.Thread(
        target=_flusher_main, args=(_flush_requested, _flush_done), name="modelotel-sigterm-flush", daemon=True
    )
    _flusher_pid = os.getpid()
    _flusher.start()


def _flusher_main(requested: threading.Event, done: threading.Event) -> None:
    while True:
        requested.wait()
        requested.clear()
        flush = _flush
        try:
            if flush is not None:
                flush(SIGTERM_FLUSH_TIMEOUT_S)
        except Exception as exc:
            SELF.error("sigterm_flush", exc)
        done.set()


def handle_sigterm(signum: int, frame: Any) -> Any:
    global _flushing, _pending
    owner = _final_export_owner
    if owner is not None:
        if owner == threading.get_ident() and _pending is None:  # we interrupted it: it chains when done
            _pending = (signum, frame)
            return None
        _final_export_done.wait(SIGTERM_FLUSH_TIMEOUT_S)
    elif not _flushing and _flusher is not None and _flusher_pid == os.getpid():  # else nothing was started here
        _flushing = True
        try:
            _flush_done.clear()
            _flush_requested.set()
            _flush_done.wait(SIGTERM_FLUSH_TIMEOUT_S)
        finally:
            _flushing = False
    return _chain(signum, frame)


def _chain(signum: int, frame: Any) -> Any:
    """Do what SIGTERM's disposition before ours would have done."""
    previous = _previous
    if callable(previous):
        return previous(signum, frame)
    if previous == signal.SIG_IGN:  # installed over SIG_IGN only by someone else's chaining: keep ignoring
        return None
    # The default action: terminate with SIGTERM's status, as if we had never been here.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    return None
