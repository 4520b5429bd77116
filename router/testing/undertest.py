"""``RouterUnderTest``: the handle the ``mcp_router`` fixture gives a test.

It publishes to the ingress as a service would and takes what arrived in a
queue, a route's copies or dead letters, by the names written in the
configuration. Waiting is always bounded: ``expect``, ``routed`` and
``dead_letters`` fail with an ``AssertionError`` naming what arrived and
which dead letters were seen, also as soon as the router stops. A queue is
consumed only from the first time a test asks about it, so a queue the test
leaves alone is free for the service's own consumer. ``close`` stops the
router and deletes every exchange and queue the configuration declared.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.config.policies import DEFAULT_RETRY
from router.config.reach import queues_reached
from router.config.retry_policy import retry_queue_name
from router.core.counts import plural
from router.testing.harness import RunningRouter, delete_entities
from router.testing.inbox import Delivery, Inbox

if TYPE_CHECKING:
    from router.broker.amqp import Connection
    from router.config.configuration import Config

__all__ = ["Match", "RouterUnderTest"]

Match = Callable[[Delivery], bool]


@dataclass
class RouterUnderTest:
    """The handle the ``mcp_router`` fixture gives a test."""

    config: Config
    prefix: str
    amqp_url: str
    connection: Connection
    router: RunningRouter
    _inboxes: dict[str, Inbox] = field(default_factory=dict)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)  # any inbox
    _publisher: Any = None

    def name(self, configured: str) -> str:
        """The broker name of an exchange or queue named ``configured`` in the configuration."""
        return f"{self.prefix}.{configured}"

    @property
    def ingress(self) -> str:
        """The broker name of the ingress exchange."""
        return self.config.topology.ingress.exchange

    async def publish(self, message_type: str, body: Any, *, version: int | None = None,
                      headers: Mapping[str, Any] | None = None,
                      message_id: str | None = None) -> str:
        """Publish to the ingress as ``router.sdk.ServicePublisher`` does; the message id."""
        from router.sdk import ServicePublisher  # noqa: PLC0415 -- the plugin loads lazily

        if self._publisher is None:
            self._publisher = await ServicePublisher.open(self.connection, self.ingress)
        message_id = await self._publisher.publish(message_type, body, version=version,
                                                   message_id=message_id,
                                                   headers=dict(headers or {}))
        return str(message_id)

    async def expect(self, queue: str, *, count: int = 1, timeout: float = 5.0,
                     where: Match | None = None) -> list[Delivery]:
        """The next ``count`` messages to arrive in ``queue`` (its configured name)."""
        return await self._take([queue], count, timeout, where or (lambda _: True),
                                f"{plural(count, 'message')} in queue {queue!r}")

    async def routed(self, queue_or_route: str, *, count: int = 1,
                     timeout: float = 5.0) -> list[Delivery]:
        """``expect`` on a queue; for a route, its copies in every queue the route reaches."""
        if queue_or_route in self._queue_names():
            return await self.expect(queue_or_route, count=count, timeout=timeout)
        routes = {r.name: r for r in self.config.topology.routes}
        if queue_or_route not in routes:
            raise AssertionError(f"{queue_or_route!r} is neither a queue nor a route of "
                                 f"{self.config.directory}")
        queues = self._reached_by(queue_or_route)
        if not queues:
            raise AssertionError(f"route {queue_or_route!r} reaches no queue through the "
                                 "bindings")
        return await self._take(queues, count, timeout,
                                lambda d: d.route == queue_or_route,
                                f"{plural(count, 'copy', 'copies')} from route {queue_or_route!r} "
                                f"in {', '.join(map(repr, queues))}")

    async def dead_letters(self, *, count: int = 1, reason: str | None = None,
                           timeout: float = 5.0) -> list[Delivery]:
        """The next ``count`` dead letters (with ``x-mcp-reason`` ``reason``, if given)."""
        def wanted(d: Delivery) -> bool:
            return reason is None or d.reason == reason

        what = f"{plural(count, 'dead letter')}" + (f" with reason {reason!r}" if reason else "")
        return await self._take([self._dead_queue()], count, timeout, wanted, what)

    def _queue_names(self) -> set[str]:
        return {q.name.removeprefix(f"{self.prefix}.")
                for q in self.config.topology.all_queues()}

    def _dead_queue(self) -> str:
        return self.config.topology.dead_letter.queue.removeprefix(f"{self.prefix}.")

    def _reached_by(self, route_name: str) -> list[str]:
        """The queues (configured names) the copies of route ``route_name`` can land in."""
        topology = self.config.topology
        route = next(r for r in topology.routes if r.name == route_name)
        types = [t for t in self.config.registry.types
                 if fnmatch.fnmatchcase(t, route.message_type)]
        reached: list[str] = []
        for dest in route.destinations():
            for key in [dest.routing_key] if dest.routing_key is not None else types:
                for queue in queues_reached(topology, dest.exchange, key):
                    name = queue.removeprefix(f"{self.prefix}.")
                    if name not in reached:
                        reached.append(name)
        return reached

    async def _take(self, queues: list[str], count: int, timeout: float, wanted: Match,
                    what: str) -> list[Delivery]:
        inboxes = [await self._inbox(q) for q in queues]
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while True:
                found = [(i, d) for i in inboxes for d in i.waiting if wanted(d)][:count]
                remaining = deadline - time.monotonic()
                if len(found) == count:
                    for inbox, delivery in found:
                        inbox.waiting.remove(delivery)
                    return [delivery for _, delivery in found]
                if remaining <= 0 or self.router.task.done():
                    raise AssertionError(self._failure(what, timeout, len(found), inboxes))
                # Woken by every arrival, and twice a second to notice a router that died.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))

    def _failure(self, what: str, timeout: float, got: int, inboxes: list[Inbox]) -> str:
        lines = [f"expected {what} within {timeout}s, got {got}"]
        for inbox in inboxes:
            others = [f"{d.message_type} (route {d.route})" for d in inbox.waiting]
            if others:
                lines.append(f"  other messages in {inbox.queue!r}: {', '.join(others)}")
        dead = self._inboxes.get(self._dead_queue())
        lines += [f"  dead letter: {d.message_type} {d.reason}: {d.error}"
                  for d in (dead.waiting if dead else [])]
        if self.router.task.done():
            lines.append(f"  the router stopped: {self.router.task.exception()!r}")
        elif self.router.service.last_error:
            lines.append(f"  router's last error: {self.router.service.last_error}")
        return "\n".join(lines)

    async def _inbox(self, queue: str) -> Inbox:
        if queue in self._inboxes:
            return self._inboxes[queue]
        declared = {q.name: q for q in self.config.topology.all_queues()}
        real = self.name(queue)
        if real not in declared:
            raise AssertionError(f"no queue {queue!r} in {self.config.directory}")
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=100)  # streams refuse consumers without it
        inbox = Inbox(queue, channel)
        self._inboxes[queue] = inbox
        await inbox.consume(real, prefix=self.prefix, stream=declared[real].type == "stream",
                            arrived=self._arrived)
        return inbox

    async def close(self) -> None:
        """Stop the router and the consumers; delete every exchange and queue declared."""
        try:
            if not self.router.task.done():
                await self.router.close()
        finally:
            for inbox in self._inboxes.values():
                with contextlib.suppress(Exception):
                    await inbox.channel.close()
            topology = self.config.topology
            await delete_entities(self.connection, [e.name for e in topology.all_exchanges()],
                                  [*(q.name for q in self.config.broker_queues()),
                                   *_service_retry_queues(self.config)])
            await self.connection.close()


def _service_retry_queues(config: Config) -> list[str]:
    """The TTL queues services on ``router.sdk`` declare beside the topology's queues
    (``<queue>.retry.<ms>ms``), for the default delays and every retry policy's."""
    delays = {*DEFAULT_RETRY.delays, *config.policies.broker_delays()}
    return [retry_queue_name(q.name, d) for q in config.topology.queues for d in sorted(delays)]
