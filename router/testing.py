"""A pytest plugin: a real router on your configuration, inside your service's own tests.

Installed with mcp-router (entry point ``pytest11``), it adds the
``mcp_router`` fixture (it needs pytest-asyncio, in any mode)::

    @pytest.mark.mcp_router(config="deploy/router")   # default: ini mcp_router_config, rootdir
    async def test_orders_reach_billing(mcp_router):
        await mcp_router.publish("OrderCreated", order, version=2)
        [copy] = await mcp_router.expect("billing.orders")
        assert copy.body["order_id"] == order["order_id"]

        await mcp_router.publish("OrderCreated", {"total_amount": "lots"})
        [dead] = await mcp_router.dead_letters(reason="schema_invalid")

The fixture checks the configuration (a bad one fails the test with
``FILE:LINE: message`` lines), copies it with every exchange and queue
renamed ``<prefix>.<name>`` (unique per test, so tests never see each
other's messages), declares it on the broker at ``MCP_AMQP_URL`` (or
``AMQP_URL``; default the local guest), runs ``RouterService`` in the test's
event loop, and afterwards stops it and deletes everything it declared.

Waiting is always bounded: ``expect``, ``routed`` and ``dead_letters`` fail
with an ``AssertionError`` naming what arrived and which dead letters were
seen. Queues are consumed by real consumers, started the first time a test
asks about a queue, so a queue the test leaves alone is free for the
service's own consumer (``mcp_router.name("billing.orders")`` is its real
name). Each delivery is returned once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import yaml

from router.topology import DeadLetterSpec, IngressSpec, queues_reached

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

    from router.config import Config
    from router.service import RouterService

__all__ = ["Delivery", "RouterUnderTest", "RunningRouter", "delete_entities", "prefix_policy",
           "prefix_topology"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def prefix_topology(topology: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """``topology.yaml`` with every exchange and queue named ``<prefix>.<name>``.

    The implied ingress and dead-letter entities are named explicitly, so
    their defaults are prefixed too; routes keep their names.
    """
    def name(value: str) -> str:
        return f"{prefix}.{value}"

    doc = dict(topology or {})
    ingress, dead = dict(doc.get("ingress") or {}), dict(doc.get("dead_letter") or {})
    ingress_default, dead_default = IngressSpec(), DeadLetterSpec()
    ingress["exchange"] = name(ingress.get("exchange", ingress_default.exchange))
    ingress["queue"] = name(ingress.get("queue", ingress_default.queue))
    dead["exchange"] = name(dead.get("exchange", dead_default.exchange))
    dead["queue"] = name(dead.get("queue", dead_default.queue))
    doc["ingress"], doc["dead_letter"] = ingress, dead
    doc["exchanges"] = [{**e, "name": name(e["name"])} for e in doc.get("exchanges") or []]
    doc["queues"] = [{**q, "name": name(q["name"])} for q in doc.get("queues") or []]
    doc["bindings"] = [{**b, "exchange": name(b["exchange"]), "queue": name(b["queue"])}
                       for b in doc.get("bindings") or []]
    doc["routes"] = [{**r, "to": [{**d, "exchange": name(d["exchange"])} for d in r["to"]]}
                     for r in doc.get("routes") or []]
    return doc


def prefix_policy(policy: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """A ``policies/*.yaml`` document with the exchanges and queues it names prefixed."""
    doc = dict(policy or {})
    if isinstance(doc.get("circuit_breakers"), list):
        doc["circuit_breakers"] = [
            {**rule, "exchange": f"{prefix}.{rule['exchange']}",
             **({"queues": [f"{prefix}.{q}" for q in rule["queues"]]} if "queues" in rule else {})}
            for rule in doc["circuit_breakers"]]
    return doc


def _copy_prefixed(source: Path, target: Path, prefix: str) -> None:
    """Copy a checked configuration directory, its broker names prefixed."""
    topology = yaml.safe_load((source / "topology.yaml").read_text(encoding="utf-8"))
    (target / "topology.yaml").write_text(yaml.safe_dump(prefix_topology(topology, prefix),
                                                         sort_keys=False), encoding="utf-8")
    shutil.copytree(source / "schemas", target / "schemas")
    if (source / "policies").is_dir():
        (target / "policies").mkdir()
        for file in sorted((source / "policies").glob("*.yaml")):
            policy = yaml.safe_load(file.read_text(encoding="utf-8"))
            (target / "policies" / file.name).write_text(
                yaml.safe_dump(prefix_policy(policy, prefix), sort_keys=False), encoding="utf-8")


async def delete_entities(connection: AbstractConnection, exchanges: Iterable[str],
                          queues: Iterable[str]) -> None:
    """Delete queues, then exchanges; one that cannot be deleted does not stop the rest."""
    channel: AbstractChannel | None = None
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


@dataclass(frozen=True)
class Delivery:
    """One message as it arrived in a queue; names are as written in the configuration."""

    queue: str
    body: Any  # the decoded JSON, or the raw bytes when the body is not JSON
    raw: bytes
    headers: Mapping[str, Any]
    message_type: str | None
    message_id: str | None
    exchange: str
    routing_key: str

    @property
    def route(self) -> str | None:
        """``x-mcp-route``: the route that sent this copy."""
        return self._header("x-mcp-route")

    @property
    def reason(self) -> str | None:
        """``x-mcp-reason`` of a dead letter."""
        return self._header("x-mcp-reason")

    @property
    def error(self) -> str | None:
        """``x-mcp-error`` of a dead letter."""
        return self._header("x-mcp-error")

    def _header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)


def _header_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value


@dataclass
class _Inbox:
    """What a consumer received from one queue and no test has taken yet."""

    queue: str
    channel: AbstractChannel
    waiting: list[Delivery] = field(default_factory=list)


Match = Callable[[Delivery], bool]


@dataclass
class RouterUnderTest:
    """The handle the ``mcp_router`` fixture gives a test."""

    config: Config
    prefix: str
    amqp_url: str
    connection: AbstractConnection
    router: RunningRouter
    _inboxes: dict[str, _Inbox] = field(default_factory=dict)
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
                                f"{count} message(s) in queue {queue!r}")

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
                                f"{count} copy/copies from route {queue_or_route!r} "
                                f"in {', '.join(map(repr, queues))}")

    async def dead_letters(self, *, count: int = 1, reason: str | None = None,
                           timeout: float = 5.0) -> list[Delivery]:
        """The next ``count`` dead letters (with ``x-mcp-reason`` ``reason``, if given)."""
        def wanted(d: Delivery) -> bool:
            return reason is None or d.reason == reason

        what = f"{count} dead letter(s)" + (f" with reason {reason!r}" if reason else "")
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
        for dest in route.to:
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

    def _failure(self, what: str, timeout: float, got: int, inboxes: list[_Inbox]) -> str:
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

    async def _inbox(self, queue: str) -> _Inbox:
        if queue in self._inboxes:
            return self._inboxes[queue]
        declared = {q.name: q for q in self.config.topology.all_queues()}
        real = self.name(queue)
        if real not in declared:
            raise AssertionError(f"no queue {queue!r} in {self.config.directory}")
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=100)  # streams refuse consumers without it
        inbox = _Inbox(queue, channel)
        self._inboxes[queue] = inbox

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            try:
                body: Any = orjson.loads(message.body)
            except orjson.JSONDecodeError:
                body = message.body
            delivery = Delivery(
                queue, body, message.body,
                {k: _header_value(v) for k, v in (message.headers or {}).items()},
                message.type, message.message_id,
                (message.exchange or "").removeprefix(f"{self.prefix}."),
                message.routing_key or "")
            async with self._arrived:
                inbox.waiting.append(delivery)
                self._arrived.notify_all()

        stream = declared[real].type == "stream"
        arguments: dict[str, Any] = {"x-stream-offset": "first"} if stream else {}
        amqp_queue = await channel.get_queue(real, ensure=False)
        await amqp_queue.consume(on_message, arguments=arguments)
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
                                  [q.name for q in self.config.broker_queues()])
            await self.connection.close()


# -- the pytest plugin ------------------------------------------------------------------------

MARKER = "mcp_router"
INI = "mcp_router_config"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, "configuration directory the mcp_router fixture routes with, relative "
                       "to the rootdir (default: the rootdir)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(config=DIR): the configuration directory "
                                       "the mcp_router fixture routes with (relative to the "
                                       "rootdir)")


@pytest.fixture
def mcp_router_config(request: pytest.FixtureRequest) -> Path:
    """The configuration directory: the marker's ``config``, else the ini option, else rootdir.

    Override this fixture to choose it in code.
    """
    marker = request.node.get_closest_marker(MARKER)
    chosen = (marker.kwargs.get("config") or (marker.args[0] if marker.args else None)
              if marker is not None else None) or request.config.getini(INI) or "."
    return (request.config.rootpath / Path(chosen)).resolve()


@pytest.fixture
def mcp_router_url() -> str:
    """The broker: ``MCP_AMQP_URL``, else ``AMQP_URL``, else the local guest."""
    # This plugin is an entry point, like the CLI: it may read the environment.
    return os.environ.get("MCP_AMQP_URL") or os.environ.get("AMQP_URL") or DEFAULT_URL


async def _start(directory: Path, url: str, workdir: Path) -> RouterUnderTest:
    from router.amqp import connect  # noqa: PLC0415 -- the plugin loads lazily
    from router.config import check_config, load_config  # noqa: PLC0415
    from router.declare import declare_config  # noqa: PLC0415
    from router.errors import BrokerUnavailable  # noqa: PLC0415
    from router.service import RouterService, Settings  # noqa: PLC0415

    problems = check_config(directory)
    if problems:
        pytest.fail(f"mcp_router: {directory} does not check:\n"
                    + "\n".join(str(p) for p in problems), pytrace=False)
    prefix = f"mcpt-{uuid.uuid4().hex[:10]}"
    _copy_prefixed(directory, workdir, prefix)
    config = load_config(workdir)
    try:
        connection = await connect(url, "mcp-router testing")
    except BrokerUnavailable as exc:
        pytest.fail(f"mcp_router: {exc} (set MCP_AMQP_URL)", pytrace=False)
    try:
        await declare_config(connection, config)
        router = RunningRouter.start(RouterService(config, Settings(url)))
        handle = RouterUnderTest(config, prefix, url, connection, router)
    except BaseException:
        await delete_entities(connection, [e.name for e in config.topology.all_exchanges()],
                              [q.name for q in config.broker_queues()])
        await connection.close()
        raise
    try:
        await router.wait_ready(READY_TIMEOUT)
        await handle._inbox(handle._dead_queue())  # failures list the dead letters seen
    except BaseException:
        await handle.close()
        raise
    return handle


async def _mcp_router(mcp_router_config: Path, mcp_router_url: str,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RouterUnderTest]:
    handle = await _start(mcp_router_config, mcp_router_url,
                          tmp_path_factory.mktemp("mcp-router"))
    try:
        yield handle
    finally:
        await handle.close()


def _needs_pytest_asyncio() -> None:
    pytest.fail("the mcp_router fixture needs pytest-asyncio: pip install 'mcp-router[testing]'",
                pytrace=False)


def _fixture() -> Any:
    """An async fixture where pytest-asyncio is installed; without it, one that says so."""
    try:
        import pytest_asyncio  # noqa: PLC0415 -- optional: plain pytest runs still load us
    except ImportError:
        return pytest.fixture(_needs_pytest_asyncio, name="mcp_router")
    return pytest_asyncio.fixture(_mcp_router, name="mcp_router")


mcp_router = _fixture()
