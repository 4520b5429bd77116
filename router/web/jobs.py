"""Bulk actions running in the background, with progress a page can poll."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from router.errors import RouterError

__all__ = ["Job", "Jobs"]

log = logging.getLogger("router.web")


@dataclass
class Job:
    """One replay or purge: how far it got and what it says at the end."""

    id: str
    action: str
    total: int
    done: int = 0
    failed: int = 0
    finished: bool = False
    summary: str = ""
    notes: list[str] = field(default_factory=list)

    def progress(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else min(100, 100 * (self.done + self.failed) // self.total)


class Jobs:
    """The recent jobs (the oldest finished ones are forgotten)."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, action: str, total: int, work: Callable[[Job], Awaitable[str]]) -> Job:
        """Run ``work`` (which returns the summary) in the background."""
        job = Job(secrets.token_hex(8), action, total)
        self._jobs[job.id] = job
        while len(self._jobs) > self.keep:
            oldest = next(iter(self._jobs.values()))
            if not oldest.finished:
                break
            self._jobs.popitem(last=False)

        async def run() -> None:
            try:
                job.summary = await work(job)
            except RouterError as exc:
                job.summary = f"{action} stopped: {exc}"
            except Exception as exc:
                log.exception("console %s failed", action)
                job.summary = f"{action} failed: {type(exc).__name__}: {exc}"
            finally:
                job.finished = True

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def wait(self) -> None:
        """Until every job has finished (for shutdown and tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
