"""Whole lines appended to one file, safely across threads, processes, forks, crashes and a size bound.

Every write opens the path anew and takes an exclusive ``flock`` on its own open file description: flock
locks belong to the description, so a descriptor shared by threads or inherited across fork() would exclude
nothing. Under the lock, one write:

* waits at most ``lock_timeout_s`` (``LOCK_NB`` and retries until a deadline); a timeout is a failed write,
  never a hang;
* checks that the file it locked is still the one at the path (another process may have rotated it while
  this one waited) and starts over on the new file if not;
* rotates when the line would take the file past ``max_bytes``: ``path`` -> ``path.1``, ``path.1`` ->
  ``path.2`` ... up to ``path.<backups>`` (the oldest is replaced). A line alone larger than the bound is
  still written whole, into an empty file. Readers (``modelotel evaluate``) read ``path.<n>`` ... ``path.1``,
  ``path`` in that order;
* ends a torn last line (a writer killed mid-line, a full disk) with ``"\\n"`` first, so this line stays a
  line of its own and the fragment is one corrupt line for readers to count;
* on a failed write (``ENOSPC``, ``EFBIG``), truncates the file back to where it started: a failure leaves no
  fragment, and the caller is told (False), never success.

Fork: a fork while a thread of this process holds the lock would hand the child a descriptor that keeps the
flock held for as long as the child lives, hanging the child's own writes and every other process's.
``os.register_at_fork`` hooks make every appender finish its write before the fork (its in-process lock is
taken in ``before`` and released on both sides), and the child closes any descriptor still in flight.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
import weakref

from ..config import DEFAULT_FILE_BACKUPS, DEFAULT_FILE_MAX_BYTES, FILE_LOCK_TIMEOUT_S

__all__ = ["LineAppender", "rotated_path"]

_logger = logging.getLogger("modelotel.otlp_json")

_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 1024
_FIRST_RETRY_S = 0.001
_MAX_RETRY_S = 0.05


def rotated_path(path: str, n: int) -> str:
    """The n-th backup of ``path`` (1 is the newest)."""
    return f"{path}.{n}"


class LineAppender:
    """Appends whole lines to ``path``; ``append``/``append_parts`` return False (and say why in ``failure``)
    instead of raising."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        what: str,
        *,
        max_bytes: int = DEFAULT_FILE_MAX_BYTES,
        backups: int = DEFAULT_FILE_BACKUPS,
        lock_timeout_s: float = FILE_LOCK_TIMEOUT_S,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.max_bytes = max(0, int(max_bytes))
        self.backups = max(1, int(backups))
        self.lock_timeout_s = lock_timeout_s
        self.failure: str | None = None  # why the last failed write failed
        self.rotations = 0  # rotations this process made
        self.torn_lines_ended = 0  # torn last lines (someone else's fragment) this process terminated
        self._what = what
        self._shutdown = False
        self._logged: set[str] = set()
        self._log_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one write at a time per process; taken around fork
        self._held_for_fork = False
        self._fd = -1  # the descriptor of the write in progress
        # Fail here, in the caller's thread, rather than on every export in a background thread.
        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            reason = "it exists and is not a directory" if os.path.exists(parent) else exc.strerror
            raise OSError(
                exc.errno, f"{what}: cannot create directory {parent!r} for {self.path!r} ({reason})"
            ) from exc
        try:
            os.close(self._open())
        except OSError as exc:
            raise OSError(
                exc.errno, f"{what}: cannot open {self.path!r} for appending ({exc.strerror or exc})"
            ) from exc
        _APPENDERS.add(self)

    def _open(self) -> int:
        flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            return os.open(self.path, os.O_RDWR | flags, 0o644)  # read access: to look at the last byte
        except PermissionError:
            return os.open(self.path, os.O_WRONLY | flags, 0o644)

    def accepting(self) -> bool:
        """False (and logs once) after shutdown, so callers skip encoding entirely."""
        if self._shutdown:
            self._log_once("shutdown", "export called after shutdown; nothing written", logging.WARNING)
        return not self._shutdown

    def append(self, line: str) -> bool:
        """Append ``line`` and a newline as one whole line."""
        if not self.accepting():
            return False
        return self._append([(line + "\n").encode("utf-8")])

    def append_parts(self, parts: list[bytes]) -> bool:
        """``append`` of the line ``b"".join(parts)``, written with writev: no big joined copy is made."""
        if not self.accepting():
            return False
        parts.append(b"\n")
        return self._append(parts)

    def shutdown(self) -> None:
        self._shutdown = True

    # -- one write -------------------------------------------------------------------------------------------

    def _append(self, parts: list[bytes]) -> bool:
        deadline = time.monotonic() + self.lock_timeout_s
        if not self._write_lock.acquire(timeout=self.lock_timeout_s):
            return self._fail("lock_timeout", f"another thread held the write lock for {self.lock_timeout_s:g} s")
        try:
            size = sum(map(len, parts))
            while True:
                if time.monotonic() > deadline:  # the file kept being rotated or removed under this write
                    return self._fail("lock_timeout", f"{self.path!r} kept changing for {self.lock_timeout_s:g} s")
                fd = self._fd = self._open()
                try:
                    if not _flock(fd, deadline):
                        return self._fail(
                            "lock_timeout",
                            f"the file lock of {self.path!r} stayed held by another process for "
                            f"{self.lock_timeout_s:g} s",
                        )
                    st = os.fstat(fd)
                    if not self._still_at_path(st):
                        continue  # rotated (or removed) while this write waited: write to the file now there
                    end = st.st_size
                    if self.max_bytes and end > 0 and end + size > self.max_bytes:
                        self._rotate()
                        continue
                    if end > 0 and _last_byte(fd, end) not in (b"\n", None):
                        parts.insert(0, b"\n")
                        self.torn_lines_ended += 1
                        self._log_once(
                            "torn", f"{self.path!r} ended mid-line (a writer was interrupted); ended that line"
                        )
                    try:
                        _write_all(fd, parts)
                    except OSError:
                        try:
                            os.ftruncate(fd, end)  # leave no fragment of this line behind
                        except OSError:
                            pass
                        raise
                    self.failure = None
                    return True
                finally:
                    self._fd = -1
                    os.close(fd)  # also releases the lock
        except OSError as exc:
            return self._fail("write_failed", f"writing to {self.path!r} failed: {exc}", logging.ERROR)
        finally:
            self._write_lock.release()

    def _still_at_path(self, st: os.stat_result) -> bool:
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)

    def _rotate(self) -> None:
        """Shift the backups up by one and move the file to ``.1``; called holding the file's lock."""
        for n in range(self.backups - 1, 0, -1):
            try:
                os.replace(rotated_path(self.path, n), rotated_path(self.path, n + 1))
            except FileNotFoundError:
                pass
        os.replace(self.path, rotated_path(self.path, 1))
        self.rotations += 1
        _logger.debug("%s: rotated %s (over %d bytes)", self._what, self.path, self.max_bytes)

    def _fail(self, kind: str, message: str, level: int = logging.WARNING) -> bool:
        self.failure = message
        self._log_once(kind, message + "; the export counts as failed", level)
        return False

    def _log_once(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        with self._log_lock:
            first = kind not in self._logged
            self._logged.add(kind)
        _logger.log(level if first else logging.DEBUG, "%s: %s", self._what, message)

    # -- fork ------------------------------------------------------------------------------------------------

    def _before_fork(self) -> None:
        # Wait for a write in progress (bounded: it gives up on the file lock by its own deadline).
        self._held_for_fork = self._write_lock.acquire(timeout=self.lock_timeout_s + 1.0)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._write_lock.release()

    def _after_fork_in_child(self) -> None:
        self._held_for_fork = False
        self._write_lock = threading.Lock()
        self._log_lock = threading.Lock()
        if self._fd >= 0:  # a write the fork did not wait for: the child's copy must not keep its flock held
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1


def _flock(fd: int, deadline: float) -> bool:
    """An exclusive flock on ``fd``, retried until ``deadline``; False when it timed out."""
    pause = _FIRST_RETRY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EINTR):
                raise
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, _MAX_RETRY_S)


def _last_byte(fd: int, size: int) -> bytes | None:
    """The file's last byte; None when it cannot be read (a write-only file): then nothing is assumed."""
    try:
        return os.pread(fd, 1, size - 1)
    except OSError:
        return None


def _write_all(fd: int, parts: list[bytes]) -> None:
    """writev until every byte is written (writes may be partial), at most IOV_MAX buffers per call."""
    start = 0
    while start < len(parts):
        chunk = parts[start : start + _IOV_MAX]
        written = os.writev(fd, chunk)
        for buf in chunk:
            if written < len(buf):
                parts[start] = buf[written:]
                break
            written -= len(buf)
            start += 1


_APPENDERS: weakref.WeakSet[LineAppender] = weakref.WeakSet()


def _before_fork() -> None:
    for appender in list(_APPENDERS):
        appender._before_fork()


def _after_fork_in_parent() -> None:
    for appender in list(_APPENDERS):
        appender._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for appender in list(_APPENDERS):
        appender._after_fork_in_child()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
