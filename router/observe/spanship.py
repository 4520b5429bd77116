"""Ships finished span records to the exporter process, off the event loop.

``submit`` only appends the record to a deque (thread-safe, a fraction of a
microsecond).  A thread of its own wakes when a batch is full or
``DELAY`` has passed, and writes the batch to the exporter process's stdin as
one length-prefixed ``marshal`` frame (C code: about a microsecond a span,
GIL released while the pipe takes it).  The exporter process
(``python -m router.observe.spanexport``) encodes and exports them over OTLP.

Like the SDK's batch processor, it drops spans rather than block routing
when the exporter cannot keep up (``MAX_QUEUE`` spans waiting), and counts
them (``dropped``).  ``flush`` waits until every span submitted so far has
been exported (or the exporter gave up on it); ``shutdown`` flushes and stops
the process.

If the exporter process dies it is started again, at once the first time, then
(``Restarts``) 1 s, 2 s, 4 s ... 30 s after each death while it keeps dying,
as one that cannot start does (a TLS file gone, a setting it refuses: it says
why in one log line); meanwhile the spans of each batch are dropped and
counted, and ``submit`` still only appends.  The exporter process logs as the
router does: the settings frame carries the root logger's level and format
(``logs.settings``).
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from router.observe.logs import settings as log_settings
from router.observe.spanrecord import SpanRecord

__all__ = ["BATCH", "DELAY", "MAX_QUEUE", "Restarts", "SpanShipper"]

log = logging.getLogger("router.spanship")

BATCH = 512  # spans per frame (the SDK's max_export_batch_size)
DELAY = 0.2  # seconds a span may wait for its batch to fill
MAX_QUEUE = 65_536  # spans waiting before new ones are dropped
SPANS, FLUSH, STOP, CONFIG = 0, 1, 2, 3  # frame kinds
HEADER = struct.Struct(">I")
FIRST_WAIT, MAX_WAIT = 1.0, 30.0  # seconds before starting again one that keeps dying
STEADY = 60.0  # seconds: a process that ran this long was working, its death is a first one


def frame(kind: int, payload: Any) -> bytes:
    """One length-prefixed frame of the exporter protocol."""
    body = marshal.dumps((kind, payload))
    return HEADER.pack(len(body)) + body


class Restarts:
    """When a dead exporter process may be started again (the decision; no clock, no sleep).

    At once after a first death, or after one that ended a steady run (``STEADY``);
    then ``FIRST_WAIT`` doubling up to ``MAX_WAIT`` while each process dies young.
    """

    def __init__(self) -> None:
        self.deaths = 0  # in a row, each of a process that died young
        self.not_before = 0.0  # the monotonic time before which none may start

    def ended(self, started: float, now: float) -> float:
        """Note the death, at ``now``, of a process started at ``started``; the wait."""
        if now - started >= STEADY:
            self.deaths = 0
        wait = min(FIRST_WAIT * 2 ** min(self.deaths - 1, 16), MAX_WAIT) if self.deaths else 0.0
        self.deaths += 1
        self.not_before = now + wait
        return wait


class _Flush:
    """One ``flush`` call waiting for the exporter's answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class SpanShipper:
    """Feeds one exporter process; ``submit`` is the ``RecordingTracer``'s sink."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config  # the exporter settings, sent as the first frame (not argv)
        self._queue: deque[SpanRecord] = deque()
        self._wake = threading.Event()
        self._flushes: deque[_Flush] = deque()
        self._stopping = False
        self._refused = 0  # spans submitted while MAX_QUEUE waited (the callers' threads)
        self._lost = 0  # spans taken while no exporter process ran (the shipper's thread)
        self.shipped = 0
        self.restarts = 0  # exporter processes started after the first
        self._backoff = Restarts()
        self._started = time.monotonic()
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._start_process()
        self._thread = threading.Thread(target=self._run, name="mcp-span-shipper", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Spans never handed to an exporter process: too many waiting, or none running."""
        return self._refused + self._lost

    def _start_process(self) -> None:
        self._started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "router.observe.spanexport"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        self._process, self._stdin, self._stdout = process, process.stdin, process.stdout
        level, fmt = log_settings()
        self._write(frame(CONFIG, {"log": {"level": level, "format": fmt}, **self._config}))

    def _close_pipes(self) -> None:
        for pipe in (self._stdin, self._stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stdin = self._stdout = None
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._process is not None:
            self._process.wait()

    def _write(self, data: bytes) -> None:
        if self._stdin is None:
            raise BrokenPipeError("no exporter process")
        self._stdin.write(data)  # buffered: the whole frame, even past the pipe's size
        self._stdin.flush()

    def submit(self, record: SpanRecord) -> None:
        """Queue one finished span for export (never blocks)."""
        queue = self._queue
        if len(queue) >= MAX_QUEUE:
            self._refused += 1
            return
        queue.append(record)
        if len(queue) == BATCH:
            self._wake.set()

    def _take(self) -> list[SpanRecord]:
        queue, batch = self._queue, []
        pop = queue.popleft
        for _ in range(min(len(queue), BATCH)):
            batch.append(pop())
        return batch

    def _ready(self, start: bool) -> bool:
        """Whether an exporter process runs; with ``start``, one starts if its wait is over."""
        process = self._process
        if process is not None and process.poll() is None:
            return True
        if process is not None:
            self._ended()
        if not start or self._stopping or time.monotonic() < self._backoff.not_before:
            return False
        self.restarts += 1
        try:
            self._start_process()
        except OSError as exc:  # no process (fork failed), or it died before its settings
            log.error("cannot start the span exporter process: %s", exc)
            self._ended()
            return False
        return True

    def _ended(self) -> None:
        """The exporter process died: reap it, and note when the next may start."""
        status = self._process.poll() if self._process is not None else None
        self._close_pipes()
        self._process = None
        wait = self._backoff.ended(self._started, time.monotonic())
        if not self._stopping:
            log.warning("span exporter process ended (exit status %s); %s", status,
                        f"another may start in {wait:g}s, spans until then are dropped"
                        if wait else "another starts with the next spans")

    def _send(self, data: bytes, start: bool = True) -> bool:
        """Write to the exporter process; False if none runs (it waits to start again, or
        ``start`` is false: a flush finding it dead has nothing a new one could confirm)."""
        for _ in (1, 2):  # a death this write finds may be restarted at once, for this write
            if not self._ready(start):
                return False
            try:
                self._write(data)
                return True
            except (OSError, ValueError):  # a broken pipe; ValueError: a closed one
                self._ended()
        return False

    def _ship(self, batch: list[SpanRecord]) -> None:
        if self._send(frame(SPANS, batch)):
            self.shipped += len(batch)
        else:
            self._lost += len(batch)

    def _answer(self) -> bool:
        """Wait for the exporter's answer to a flush frame."""
        if self._stdout is None:
            return False
        return self._stdout.readline().strip() == b"ok"

    def _run(self) -> None:
        while True:
            self._wake.wait(DELAY)
            self._wake.clear()
            while len(self._queue) >= BATCH or (self._queue and not self._flushes):
                self._ship(self._take())
            while self._flushes:
                while self._queue:
                    self._ship(self._take())
                waiter = self._flushes.popleft()
                waiter.ok = self._send(frame(FLUSH, None), start=False) and self._answer()
                waiter.done.set()
            if self._stopping and not self._queue:
                return

    def flush(self, timeout: float = 30.0) -> bool:
        """Export everything submitted so far; True when the exporter confirmed it."""
        waiter = _Flush()
        self._flushes.append(waiter)
        self._wake.set()
        return waiter.done.wait(timeout) and waiter.ok

    def shutdown(self, timeout: float = 30.0) -> None:
        """Flush, then stop the exporter process."""
        started = time.monotonic()
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(max(timeout - (time.monotonic() - started), 0.1))
        process = self._process
        if process is not None and process.poll() is None:
            try:
                self._send(frame(STOP, None), start=False)
                if self._stdin is not None:
                    self._stdin.close()
                process.wait(max(timeout - (time.monotonic() - started), 1.0))
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
        self._close_pipes()
        if self.dropped:
            log.warning("%d spans were dropped: the exporter could not keep up or was not "
                        "running", self.dropped)
