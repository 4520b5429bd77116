"""``mcp-router run --workers N``: N routing processes under one supervisor.

Python routes on one core per process; the broker's quorum queue hands
deliveries round-robin to every consumer, so N workers consuming the same
ingress queue use N cores with nothing shared but the broker.  The
supervisor routes nothing itself.  It

* starts each worker as ``python -m router.tools.cli run`` with the same
  arguments and an HTTP port of its own on 127.0.0.1;
* scrapes every worker's ``/metrics`` and ``/readyz`` each second and serves
  them as one (``router.runtime.fleet``) on ``--http``: ready only when all are;
* restarts a worker that exits on its own, after a pause that doubles while
  it keeps crashing within ``STABLE`` seconds (1 s up to 30 s);
* on SIGTERM or SIGINT sends SIGTERM to every worker, each of which drains
  what it has in flight, waits for them all and exits 0; SIGHUP is passed on
  (reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from router.runtime.fleet import (
    WorkerView,
    fleet_readiness,
    merge_metrics,
    parse_readiness,
    supervisor_metrics,
)
from router.runtime.http import HealthServer, parse_address

__all__ = ["Supervisor", "child_env", "fetch", "free_port", "run_fleet", "worker_argv"]

log = logging.getLogger("router.supervisor")

SCRAPE_INTERVAL = 1.0
STABLE = 30.0  # a worker that ran this long before exiting is restarted at once
MIN_PAUSE, MAX_PAUSE = 1.0, 30.0
STOP_GRACE = 45.0  # seconds for workers to drain after SIGTERM (their drain limit is 30)


async def fetch(port: int, path: str, method: str = "GET", within: float = 2.0
                ) -> tuple[int, bytes]:
    """One HTTP/1.1 request to a worker on 127.0.0.1; (status, body)."""
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)
    return (int(status[1]) if len(status) > 1 and status[1].isdigit() else 0), body


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    view: WorkerView
    port: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    pause: float = MIN_PAUSE


@dataclass
class Supervisor:
    """Runs ``count`` workers with ``argv`` (the ``run`` arguments minus ``--workers``)."""

    count: int
    argv: Sequence[str]
    env: Mapping[str, str]
    workers: list[Worker] = field(init=False)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.workers = [Worker(WorkerView(i), free_port()) for i in range(self.count)]

    # -- the Fleet interface, served by any HTTP server
    def readiness(self) -> tuple[bool, dict[str, object]]:
        ready, detail = fleet_readiness([w.view for w in self.workers])
        return ready and not self.stopping, detail

    def exposition(self) -> bytes:
        views = [w.view for w in self.workers]
        return merge_metrics([(v.index, v.metrics) for v in views], supervisor_metrics(views))

    async def reload(self) -> tuple[bool, dict[str, object]]:
        """``POST /reload`` on every worker; ok when every one reloaded."""
        answers = await asyncio.gather(*(fetch(w.port, "/reload", "POST", 60.0)
                                         for w in self.workers), return_exceptions=True)
        results = [{"worker": w.view.index,
                    "ok": not isinstance(a, BaseException) and a[0] == 200}
                   for w, a in zip(self.workers, answers, strict=True)]
        return all(r["ok"] for r in results), {"workers": results}

    # -- the lifetime
    async def _spawn(self, worker: Worker) -> asyncio.subprocess.Process:
        argv = [sys.executable, "-m", "router.tools.cli", "run", *self.argv,
                "--http", f"127.0.0.1:{worker.port}"]
        env = {**self.env, "MCP_WORKER": str(worker.view.index)}
        worker.process = await asyncio.create_subprocess_exec(*argv, env=env)
        worker.started = time.monotonic()
        worker.view.pid = worker.process.pid
        log.info("worker %d started (pid %d)", worker.view.index, worker.process.pid)
        return worker.process

    def _stopped(self) -> bool:
        return self.stopping

    async def _keep(self, worker: Worker) -> None:
        """Run one worker until the supervisor stops, restarting it when it exits."""
        while not self.stopping:
            code = await (await self._spawn(worker)).wait()
            worker.view.ready, worker.view.pid = False, None
            if self._stopped():  # set while this worker ran
                return
            ran = time.monotonic() - worker.started
            worker.pause = MIN_PAUSE if ran >= STABLE else min(worker.pause * 2, MAX_PAUSE)
            log.error("worker %d exited with %s after %.0fs; restarting in %.0fs",
                      worker.view.index, code, ran, worker.pause)
            worker.view.restarts += 1
            await asyncio.sleep(worker.pause)

    async def _scrape(self) -> None:
        while True:
            await asyncio.gather(*(self._look(w) for w in self.workers))
            await asyncio.sleep(SCRAPE_INTERVAL)

    async def _look(self, worker: Worker) -> None:
        view = worker.view
        try:
            status, body = await fetch(worker.port, "/readyz")
            view.ready, view.detail = parse_readiness(status, body)
            status, body = await fetch(worker.port, "/metrics")
            if status == 200:
                view.metrics = body
        except (OSError, TimeoutError, ValueError):
            view.ready = False  # not listening yet, or gone

    def _signal(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def run(self, stop: asyncio.Event) -> int:
        """Supervise until ``stop``; then stop every worker and wait for them."""
        keepers = [asyncio.create_task(self._keep(w)) for w in self.workers]
        scraper = asyncio.create_task(self._scrape())
        await stop.wait()
        self.stopping = True
        log.info("stopping %d workers: each drains its messages in flight", self.count)
        self._signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_GRACE):
                await asyncio.gather(*keepers)
        except TimeoutError:
            log.error("workers still running after %.0fs: killing them", STOP_GRACE)
            self._signal(signal.SIGKILL)
            await asyncio.gather(*keepers)
        scraper.cancel()
        codes = [w.process.returncode for w in self.workers if w.process is not None]
        log.info("all workers stopped (exit codes %s)", codes)
        return 0

    def reload_all(self) -> None:
        """SIGHUP every worker: each reloads its configuration."""
        self._signal(signal.SIGHUP)


async def run_fleet(workers: int, run_args: Sequence[str], env: Mapping[str, str],
                    http: str | None) -> int:
    """``run --workers N``: the supervisor and its one HTTP endpoint, until SIGTERM."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    fleet = Supervisor(workers, worker_argv(run_args), env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, fleet.reload_all)
    health: HealthServer | None = None
    if http:
        health = HealthServer(fleet.readiness, fleet.exposition, fleet.reload)
        host, port = parse_address(http)
        port = await health.start(host, port)
        log.info("http on %s:%d for %d workers (/healthz /readyz /metrics, POST /reload)",
                 host, port, workers)
    try:
        return await fleet.run(stop)
    finally:
        if health is not None:
            await health.close()


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The ``run`` arguments a worker gets: without ``--workers``, ``--http`` and
    ``--amqp-url`` (which goes in the environment, off the process list)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--workers", "--http", "--amqp-url"):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def child_env(env: Mapping[str, str], amqp_url: str) -> dict[str, str]:
    """The workers' environment: the broker URL passed here, not on their command line."""
    return {**env, "MCP_AMQP_URL": amqp_url, "PYTHONUNBUFFERED": "1"}

