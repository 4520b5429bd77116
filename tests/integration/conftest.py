"""Fixtures for tests against the real RabbitMQ.

Every test gets its own entity names (a random prefix), so tests never see
each other's messages, and everything a test declares is deleted after it.
Broker tests *fail* instead of skipping when ``CI`` is set and the broker is
unreachable (STYLE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import yaml

from router.broker.amqp import connect
from router.config.configuration import Config, load_config
from router.runtime.service import RouterService, Settings
from router.testing.nodes import Node
from router.testing.plugin import RunningRouter, delete_entities, start_node_early
from tests.integration.browser import CHROMIUM, Browser
from tests.integration.leftovers import claim, sweep_leftover_queues  # noqa: F401 -- a session fixture

ROOT = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/")


def _broker_reachable() -> bool:
    parts = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 5672), 2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _require_broker() -> None:
    """Fail under CI, skip elsewhere, when no broker answers."""
    if _broker_reachable():
        return
    message = f"RabbitMQ is not reachable at {AMQP_URL}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: broker tests must not be skipped)")
    pytest.skip(message)


# Millisecond tiers so retry tests stay fast: 2 quick attempts, then 2 broker rounds.
TEST_RETRY_POLICY = """\
retry:
  - match: "*"
    attempts: 2
    backoff: {initial: 1ms, max: 1ms}
    delays: [50ms, 100ms]
"""


def example_topology(prefix: str) -> dict[str, Any]:
    """A small order-domain topology with names unique to one test."""
    p = prefix
    return {
        "ingress": {"exchange": f"{p}.ingress", "queue": f"{p}.ingress.q", "delivery_limit": 3},
        "dead_letter": {"exchange": f"{p}.dlx", "queue": f"{p}.dead"},
        # A control exchange of its own: a running router never hears the tests' services.
        "control": {"exchange": f"{p}.control"},
        "exchanges": [{"name": f"{p}.orders", "type": "topic"},
                      {"name": f"{p}.nowhere", "type": "topic"}],
        "queues": [{"name": f"{p}.billing", "type": "quorum"},
                   {"name": f"{p}.review", "type": "classic", "max_priority": 10},
                   {"name": f"{p}.audit", "type": "stream",
                    "arguments": {"x-max-length-bytes": 10_000_000}}],
        "bindings": [{"exchange": f"{p}.orders", "queue": f"{p}.billing",
                      "routing_key": "order.created"},
                     {"exchange": f"{p}.orders", "queue": f"{p}.review",
                      "routing_key": "order.review"}],
        "routes": [
            {"name": "order-created", "message_type": "OrderCreated",
             "to": [{"exchange": f"{p}.orders", "routing_key": "order.created"}]},
            {"name": "big-orders", "message_type": "OrderCreated",
             "when": "message.total_amount > 1000.0",
             "to": [{"exchange": f"{p}.orders", "routing_key": "order.review"}]},
            {"name": "updates-nowhere", "message_type": "OrderUpdated",
             "to": [{"exchange": f"{p}.nowhere", "routing_key": "x"}]},
        ],
    }


def order_created(total: float = 10.0, **extra: Any) -> dict[str, Any]:
    """A valid OrderCreated v2 body of the example schemas."""
    body = {
        "order_id": str(uuid.uuid4()), "customer_id": "c-1", "total_amount": total,
        "currency": "EUR", "created_at": "2026-11-24T10:00:00Z",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}],
    }
    body.update(extra)
    return body


@dataclass
class ConfigDir:
    """A configuration directory written for one test."""

    path: Path
    prefix: str
    topology: dict[str, Any]
    extra_queues: list[str] = field(default_factory=list)  # declared by a test itself

    def load(self) -> Config:
        return load_config(self.path)

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    @property
    def ingress(self) -> str:
        return str(self.topology["ingress"]["exchange"])

    @property
    def ingress_queue(self) -> str:
        return str(self.topology["ingress"]["queue"])

    @property
    def dead_queue(self) -> str:
        return str(self.topology["dead_letter"]["queue"])

    def write(self, topology: dict[str, Any]) -> None:
        self.topology = topology
        (self.path / "topology.yaml").write_text(yaml.safe_dump(topology, sort_keys=False))

    def entities(self) -> tuple[list[str], list[str]]:
        t = self.topology
        exchanges = [t["ingress"]["exchange"], t["dead_letter"]["exchange"],
                     *(e["name"] for e in t.get("exchanges", []))]
        if "control" in t:
            exchanges.append(t["control"]["exchange"])
        queues = [t["ingress"]["queue"], t["dead_letter"]["queue"],
                  *(q["name"] for q in t.get("queues", []))]
        with contextlib.suppress(Exception):  # a test may leave a broken configuration
            queues += [q.name for q in self.load().retry_queues()]
        return exchanges, queues + self.extra_queues


@dataclass
class Broker:
    """Test-side access to RabbitMQ: publish raw messages, read queues, clean up."""

    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    url: str = AMQP_URL
    to_delete: list[tuple[str, str]] = field(default_factory=list)

    async def publish(self, exchange: str, body: bytes | dict[str, Any], *,
                      routing_key: str = "", connection: Any = None, **props: Any) -> None:
        """Publish one message with confirms (and mandatory) as a service would."""
        raw = body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
        channel = self.channel if connection is None else await connection.channel()
        ex = await channel.get_exchange(exchange, ensure=False)
        props.setdefault("delivery_mode", aio_pika.DeliveryMode.PERSISTENT)
        await ex.publish(aio_pika.Message(raw, **props), routing_key=routing_key)

    async def publish_with_pika(self, exchange: str, body: bytes, **props: Any) -> None:
        """Publish through pika, a client that sends exactly the properties given."""
        import pika  # noqa: PLC0415 -- only these tests need a second client

        def send() -> None:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            try:
                channel = connection.channel()
                channel.confirm_delivery()
                channel.basic_publish(exchange, props.pop("routing_key", ""), body,
                                      pika.BasicProperties(**props))
            finally:
                connection.close()

        await asyncio.to_thread(send)

    async def publish_many(self, exchange: str, messages: list[tuple[bytes, dict[str, Any]]],
                           routing_key: str = "") -> None:
        """Publish many messages, confirms pipelined."""
        ex = await self.channel.get_exchange(exchange, ensure=False)
        for chunk in range(0, len(messages), 500):
            await asyncio.gather(*(
                ex.publish(aio_pika.Message(raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                            **props), routing_key=routing_key)
                for raw, props in messages[chunk:chunk + 500]))

    async def count(self, queue: str) -> int:
        """Ready messages in ``queue``."""
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def take(self, queue: str, n: int, timeout: float = 10.0) -> list[
            aio_pika.abc.AbstractIncomingMessage]:
        """Consume and ack exactly ``n`` messages from ``queue`` (fails on timeout)."""
        got = await self.drain(queue, until=n, timeout=timeout)
        assert len(got) == n, f"expected {n} messages in {queue}, got {len(got)}"
        return got

    async def drain_all(self, queue: str, timeout: float = 30.0) -> list[
            aio_pika.abc.AbstractIncomingMessage]:
        """Consume and ack what ``queue`` holds now (its ready count): for a queue whose
        publishers are done, without waiting for a quiet spell to say so."""
        return await self.take(queue, await self.count(queue), timeout)

    async def drain_ids(self, queue: str, ids: Iterable[str], timeout: float = 60.0) -> list[
            aio_pika.abc.AbstractIncomingMessage]:
        """Consume and ack from ``queue`` until every one of ``ids`` arrived (or ``timeout``:
        the caller's assertion names what is missing); duplicates on the way are kept."""
        return await self.drain(queue, until=0, timeout=timeout, ids=ids)

    async def drain(self, queue: str, *, until: int | None = None, timeout: float = 2.0,
                    idle: float | None = None, ids: Iterable[str] = ()) -> list[
                        aio_pika.abc.AbstractIncomingMessage]:
        """Consume from ``queue`` until ``until`` messages, every one of ``ids``,
        ``timeout``, or ``idle`` quiet."""
        missing = set(ids)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=500)
        q = await channel.get_queue(queue, ensure=False)
        got: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = time.monotonic() + timeout
        try:
            async with q.iterator() as it:
                while until is None or len(got) < until or missing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    wait = remaining if idle is None else min(remaining, idle)
                    try:
                        message = await asyncio.wait_for(it.__anext__(), wait)
                    except TimeoutError:
                        break
                    await message.ack()
                    got.append(message)
                    missing.discard(message.message_id or "")
        finally:
            await channel.close()
        return got

    async def delete(self, exchanges: list[str], queues: list[str]) -> None:
        try:
            await (await self.connection.channel()).close()
        except Exception:  # noqa: BLE001 -- closed by a fault test: clean up on a new one
            self.connection = await connect(self.url, "test cleanup")
        await delete_entities(self.connection, exchanges, queues)


@pytest.fixture(autouse=True)
async def _close_callbacks_run() -> AsyncIterator[None]:
    """Let aio-pika's connection-close callbacks (tasks of their own) finish before the
    test's event loop closes, instead of being destroyed pending at the session's end:
    wait, at most 0.1 s, until the loop runs no other task."""
    yield
    this = asyncio.current_task()
    deadline = time.monotonic() + 0.1
    await asyncio.sleep(0.005)  # callbacks the last close scheduled start their tasks
    while time.monotonic() < deadline and any(
            not task.done() for task in asyncio.all_tasks() if task is not this):
        await asyncio.sleep(0.005)


@pytest.fixture
def amqp_url() -> str:
    """The broker a test runs against: the shared one, unless a module overrides this."""
    return AMQP_URL


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    connection = await connect(amqp_url, "test broker")  # the first node that answers
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        yield Broker(connection, channel, amqp_url)
    finally:
        with contextlib.suppress(Exception):  # a fault test may have closed it already
            await connection.close()


@pytest.fixture
def prefix() -> str:
    return claim(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def config_dir(tmp_path: Path, prefix: str, broker: Broker) -> AsyncIterator[ConfigDir]:
    """The example schemas and policies with a test-unique topology; entities deleted after."""
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "retry.yaml").write_text(TEST_RETRY_POLICY)
    directory = ConfigDir(tmp_path, prefix, {})
    directory.write(example_topology(prefix))
    try:
        yield directory
    finally:
        await broker.delete(*directory.entities())


async def _no_wait(seconds: float) -> None:
    """Backoff without the wait, but never a busy loop: at most 10 ms."""
    await asyncio.sleep(min(seconds, 0.01))


async def apply(directory: ConfigDir, url: str = AMQP_URL) -> list[str]:
    """Declare a configuration's topology, as ``mcp-router apply`` does."""
    from router.broker.declare import declare_config  # noqa: PLC0415

    connection = await connect(url, "test apply")
    try:
        return await declare_config(connection, directory.load())
    finally:
        await connection.close()


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll an async predicate until it is true (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


@pytest.fixture
async def start_router(amqp_url: str) -> AsyncIterator[Any]:
    """Start an in-process router on a ``ConfigDir``; in-process retries do not sleep."""
    running: list[RunningRouter] = []

    async def start(directory: ConfigDir, tracer: Any = None, **settings: Any) -> RunningRouter:
        settings.setdefault("prefetch", 64)
        settings.setdefault("amqp_url", amqp_url)
        service = RouterService(directory.load(), Settings(**settings), sleep=_no_wait)
        if tracer is not None:
            service.tracer = tracer
        router = RunningRouter.start(service)
        running.append(router)
        await router.wait_ready()
        return router

    yield start
    for router in running:
        if not router.task.done():
            await router.close()


@dataclass
class RouterProcess:
    """``mcp-router run`` as a child process, for signals and kill -9."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def router_process(tmp_path: Path, amqp_url: str) -> Iterator[Any]:
    procs: list[RouterProcess] = []

    def spawn(directory: ConfigDir, *extra: str, env: dict[str, str] | None = None
              ) -> RouterProcess:
        log = tmp_path / f"router-{len(procs)}.log"
        env = {**os.environ, "MCP_AMQP_URL": amqp_url, **(env or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 -- our own CLI with test arguments
                [sys.executable, "-m", "router", "run", "--config", str(directory.path), *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        procs.append(RouterProcess(proc, log))
        return procs[-1]

    yield spawn
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def http_call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One HTTP request to a local router: status and body text (errors included)."""
    request = urllib.request.Request(url, method=method,  # noqa: S310 -- local test URL
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# The session's single throwaway nodes, by fixture name: the factory's name and options.
SOLO: tuple[str, dict[str, Any]] = ("solo", {"management": True})
IMPATIENT: tuple[str, dict[str, Any]] = (  # test_consumer_timeout: a 2 s consumer timeout
    "impatient", {"settings": {"consumer_timeout": "2000"},
                  "advanced": "[{rabbit, [{channel_tick_interval, 500}]}]."})


_BROWSER = pytest.StashKey[Browser | None]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Boot the throwaway nodes (``router.testing.booting``) and the browser the collected
    tests will use while the tests before them run."""
    if session.config.option.collectonly:
        return
    used = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for fixture, (name, options) in (("solo", SOLO), ("impatient", IMPATIENT)):
        if fixture in used:
            start_node_early(session.config, name, **options)
    if "browser" in used and Path(CHROMIUM).exists():
        session.config.stash[_BROWSER] = Browser()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close the browser launched early if no test took it."""
    early = session.config.stash.get(_BROWSER, None)
    if early is not None:
        early.close()


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    """One chromium for the whole session (tests/integration/browser.py)."""
    b = request.config.stash.get(_BROWSER, None) or Browser()
    request.config.stash[_BROWSER] = None  # taken: closed here
    yield b
    b.close()


@pytest.fixture(scope="session")
def solo(rabbitmq_node_factory: Any) -> Node:
    """A throwaway single RabbitMQ node with the management API, shared by the session.

    For what must never happen to the shared broker: stopping its application,
    closing its connections, alarms, and the management plugin.
    """
    name, options = SOLO
    node: Node = rabbitmq_node_factory(name, **options)
    return node


@pytest.fixture
def solo_url(solo: Node) -> str:
    """The solo node's URL, the node running (fault tests restore what they break)."""
    if solo.os_pid() is None:
        solo.start()
        solo.wait()
    return solo.url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault ledger of the session's fault rows (tests/integration/test_cluster.py)."""
    from tests.integration.ledger import TABLE, table  # noqa: PLC0415 -- imports this module

    if TABLE:
        terminalreporter.write_sep("=", "fault ledger")
        terminalreporter.write_line(table())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl on the shared broker: only for entities of the test's own (users)."""
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,  # noqa: S603,S607
                            timeout=60, check=True)
    return result.stdout


@pytest.fixture(scope="session")
def other_user() -> Iterator[tuple[str, str]]:
    """A second broker user with full permissions on the default vhost, deleted when the
    session ends (no test changes it: the tests only publish as it)."""
    name, password = f"svc-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    rabbitmqctl("add_user", name, password)
    rabbitmqctl("set_permissions", "-p", "/", name, ".*", ".*", ".*")
    try:
        yield name, password
    finally:
        rabbitmqctl("delete_user", name)


from tests.integration.ledger import ledger_row  # noqa: E402, F401 -- a fixture for fault rows
