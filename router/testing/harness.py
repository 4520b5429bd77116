"""A router running inside a test's event loop, and the teardown of what a test declared.

``RunningRouter`` runs a ``RouterService`` as a task of the current loop;
``wait_ready`` and ``close`` are bounded, and fail with an ``AssertionError``
or a timeout rather than hang. ``delete_entities`` deletes queues, then
exchanges, and never stops at one that cannot be deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router.broker.amqp import Connection, Wrapper
    from router.runtime.service import RouterService

__all__ = ["RunningRouter", "delete_entities"]

STOP_TIMEOUT = 20.0


async def delete_entities(connection: Connection, exchanges: Iterable[str],
                          queues: Iterable[str]) -> None:
    """Delete queues, then exchanges; one that cannot be deleted does not stop the rest."""
    channel: Wrapper | None = None
    for kind, names in (("queue", queues), ("exchange", exchanges)):
        for entity in names:
            with contextlib.suppress(Exception):
                if channel is None or channel.is_closed:  # a failed delete closes it
                    channel = await connection.channel()
                if kind == "queue":
                    await channel.queue_delete(entity)
                else:
                    await channel.exchange_delete(entity)
    if channel is not None:
        with contextlib.suppress(Exception):
            await channel.close()


@dataclass
class RunningRouter:
    """A ``RouterService`` running as a task of the current event loop."""

    service: RouterService
    stop: asyncio.Event
    task: asyncio.Task[None]

    @classmethod
    def start(cls, service: RouterService) -> RunningRouter:
        stop = asyncio.Event()
        return cls(service, stop, asyncio.create_task(service.run(stop)))

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Return once connected with the topology declared; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.service.ready:
            if self.task.done():
                raise AssertionError(f"the router stopped: {self.task.exception()!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the router did not become ready in {timeout}s: "
                                     f"{self.service.last_error}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        """Stop intake, let work in flight finish, wait for the task."""
        self.stop.set()
        await asyncio.wait_for(self.task, STOP_TIMEOUT)
