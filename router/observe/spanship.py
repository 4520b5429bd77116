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
the process.  If the exporter process dies it is started again.
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

from router.observe.spanrecord import SpanRecord

__all__ = ["BATCH", "DELAY", "MAX_QUEUE", "SpanShipper"]

log = logging.getLogger("router.spanship")

BATCH = 512  # spans per frame (the SDK's max_export_batch_size)
DELAY = 0.2  # seconds a span may wait for its batch to fill
MAX_QUEUE = 65_536  # spans waiting before new ones are dropped
SPANS, FLUSH, STOP, CONFIG = 0, 1, 2, 3  # frame kinds
HEADER = struct.Struct(">I")


def frame(kind: int, payload: Any) -> bytes:
    """One length-prefixed frame of the exporter protocol."""
    body = marshal.dumps((kind, payload))
    return HEADER.pack(len(body)) + body


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
        self.dropped = 0
        self.shipped = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin: IO[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._start_process()
        self._thread = threading.Thread(target=self._run, name="mcp-span-shipper", daemon=True)
        self._thread.start()

    def _start_process(self) -> None:
        self._close_pipes()
        process = subprocess.Popen(
            [sys.executable, "-m", "router.observe.spanexport"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        self._process, self._stdin, self._stdout = process, process.stdin, process.stdout
        self._write(frame(CONFIG, self._config))

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
            self.dropped += 1
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

    def _send(self, data: bytes) -> None:
        """Write to the exporter; restart it (once per write) if it has died."""
        for attempt in (1, 2):
            process = self._process
            try:
                self._write(data)
                return
            except (BrokenPipeError, OSError, ValueError) as exc:
                if attempt == 2 or self._stopping:
                    log.error("span exporter process unusable, spans lost: %s", exc)
                    return
                log.warning("span exporter process ended (%s); starting it again",
                            process.poll() if process else None)
                self._start_process()

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
                batch = self._take()
                self._send(frame(SPANS, batch))
                self.shipped += len(batch)
            while self._flushes:
                while self._queue:
                    self._send(frame(SPANS, self._take()))
                waiter = self._flushes.popleft()
                self._send(frame(FLUSH, None))
                waiter.ok = self._answer()
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
                self._send(frame(STOP, None))
                if self._stdin is not None:
                    self._stdin.close()
                process.wait(max(timeout - (time.monotonic() - started), 1.0))
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
        self._close_pipes()
        if self.dropped:
            log.warning("%d spans were dropped: the exporter could not keep up", self.dropped)
