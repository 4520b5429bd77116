"""One behaviour suite, two brokers: every test runs on the in-memory fake and on RabbitMQ.

As FastStream's ``TestRabbitBroker(with_real=...)``: the ``bench`` fixture is
parametrised over ``fake`` (``router.testing.fakebroker``, milliseconds) and
``real`` (the shared broker at ``MCP_AMQP_URL``, entities named for the test
and deleted after).  Both offer the same four things: publish (confirmed,
mandatory), take a message and settle it, read a queue, and which routes have
no live consumer.  ``Bench.route_one`` takes one message from the ingress
queue and runs it through the router's own path: ``original`` → ``prepare``
→ ``Settler.settle`` → ack/requeue/reject.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import pytest
import yaml
from opentelemetry.trace import INVALID_SPAN
from pamqp.commands import Basic

from router.broker.amqp import envelope_of
from router.broker.amqplink import Link, open_link
from router.broker.declare import declare_config
from router.broker.publish import ChannelPool, Publisher
from router.broker.settle import Settler
from router.config.configuration import Config, load_config
from router.config.unconsumed_rules import UnconsumedRule, unconsumed_rule
from router.core.deliverysteps import Verdict
from router.core.envelope import Envelope, Properties
from router.core.pipeline import original
from router.core.sealing import prepare
from router.observe.metrics import Metrics
from router.testing.fakebroker import FakeBroker

AMQP_URL = os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/")
ROUTER_USER = "guest"  # the real broker's user: parked copies carry it as user_id


class Shell(Protocol):
    """What a behaviour test needs of a broker, fake or real."""

    unconsumed: set[str]

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None: ...

    async def wait_usable(self, within: float) -> bool: ...

    async def take(self, queue: str) -> Any: ...

    async def settle(self, taken: Any, verdict: Verdict) -> None: ...

    async def messages(self, queue: str) -> list[Envelope]: ...

    def holds(self, route: str, message_type: str, config: Config) -> UnconsumedRule | None: ...


class Fake:
    """The in-memory broker behind the ``Shell`` protocol."""

    def __init__(self, config: Config) -> None:
        self.broker = FakeBroker.of(config)
        self.unconsumed = self.broker.unconsumed
        self.publish = self.broker.publish
        self.wait_usable = self.broker.wait_usable
        self.holds = self.broker.holds

    async def take(self, queue: str) -> Any:
        return self.broker.take(queue)

    async def settle(self, taken: Any, verdict: Verdict) -> None:
        self.broker.settle(taken, verdict)

    async def messages(self, queue: str) -> list[Envelope]:
        return self.broker.messages(queue)


@dataclass
class Real:
    """RabbitMQ behind the ``Shell`` protocol: confirms and returns are the broker's."""

    connection: aio_pika.abc.AbstractConnection
    pool: ChannelPool
    reader: Any  # an aiormq channel, for basic_get and the acks
    unconsumed: set[str] = field(default_factory=set)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        await self.pool.publish(exchange, routing_key, body, properties)

    async def wait_usable(self, within: float) -> bool:
        return await self.pool.wait_usable(within)

    async def take(self, queue: str) -> Any:
        message = await self.reader.basic_get(queue, no_ack=False)
        return None if isinstance(message.delivery, Basic.GetEmpty) else message

    async def settle(self, taken: Any, verdict: Verdict) -> None:
        tag = taken.delivery_tag
        match verdict:
            case Verdict.ACK:
                await self.reader.basic_ack(tag)
            case Verdict.REQUEUE:
                await self.reader.basic_nack(tag, requeue=True)
            case Verdict.REJECT:
                await self.reader.basic_reject(tag, requeue=False)

    async def messages(self, queue: str) -> list[Envelope]:
        found = []
        for _ in range(1000):
            message = await self.reader.basic_get(queue, no_ack=True)
            if isinstance(message.delivery, Basic.GetEmpty):
                break
            found.append(envelope_of(message))
        return found

    def holds(self, route: str, message_type: str, config: Config) -> UnconsumedRule | None:
        if route not in self.unconsumed:
            return None
        rule = unconsumed_rule(config.policies.unconsumed, message_type)
        return None if rule is None or rule.action == "deliver" else rule


@dataclass
class Bench:
    """A configuration, a broker (fake or real) and a settler publishing through it."""

    kind: str
    prefix: str
    config: Config
    shell: Shell
    settler: Settler
    ticks: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def name(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"

    async def send(self, body: Any, message_type: str, **properties: Any) -> None:
        """Publish a message to the ingress exchange, as a service would."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        props = Properties(message_id=properties.pop("message_id", str(uuid.uuid4())),
                           type=message_type, content_type="application/json", **properties)
        await self.shell.publish(self.config.topology.ingress.exchange, message_type, raw, props)

    async def route_one(self) -> Verdict:
        """Take one ingress message and route it as the router does; settle it."""
        taken = None
        for _ in range(100):  # a real broker may take a moment to make it visible
            taken = await self.shell.take(self.config.topology.ingress.queue)
            if taken is not None:
                break
            await asyncio.sleep(0.02)
        assert taken is not None, "nothing arrived in the ingress queue"
        delivered = taken.envelope if self.kind == "fake" else envelope_of(taken)
        envelope, retry = original(delivered, ROUTER_USER)
        prepared = prepare(envelope, self.config, retry)
        verdict = await self.settler.settle(prepared.outcome, prepared.envelope, self.config,
                                            INVALID_SPAN)
        await self.shell.settle(taken, verdict)
        return verdict

    async def messages(self, queue: str) -> list[Envelope]:
        """What reached ``queue`` (taken off it); a real broker is given a moment."""
        if self.kind == "real":
            await asyncio.sleep(0.05)
        return await self.shell.messages(queue)

    @property
    def dead(self) -> str:
        return self.config.topology.dead_letter.queue

    def retry_queue(self, delay_ms: int) -> str:
        return f"{self.config.topology.ingress.queue}.retry.{delay_ms}ms"


MakeBench = Callable[..., Any]


def _write(root: Path, prefix: str, topology: dict[str, Any], schemas: dict[str, Any],
           policies: dict[str, Any]) -> Config:
    root.mkdir(parents=True, exist_ok=True)
    full = {"ingress": {"exchange": f"{prefix}.ingress", "queue": f"{prefix}.ingress.q"},
            "dead_letter": {"exchange": f"{prefix}.dlx", "queue": f"{prefix}.dead"},
            "control": {"exchange": f"{prefix}.control"}, **topology}
    (root / "topology.yaml").write_text(yaml.safe_dump(full, sort_keys=False))
    for rel, schema in schemas.items():
        path = root / "schemas" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(schema if isinstance(schema, str) else json.dumps(schema))
    (root / "schemas").mkdir(exist_ok=True)
    (root / "policies").mkdir(exist_ok=True)
    for name, policy in policies.items():
        (root / "policies" / name).write_text(yaml.safe_dump(policy, sort_keys=False))
    return load_config(root)


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture(params=["fake", "real"])
async def bench(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeBench]:
    """Factory: ``await bench(topology, schemas=..., policies=...)`` with names of
    ``bench.prefix`` (``{p}`` in the topology's and policies' strings is replaced by it)."""
    kind, prefix = str(request.param), f"b{uuid.uuid4().hex[:10]}"
    connections: list[aio_pika.abc.AbstractConnection] = []
    links: list[Link] = []
    configs: list[Config] = []

    async def make(topology: dict[str, Any], *, schemas: dict[str, Any] | None = None,
                   policies: dict[str, Any] | None = None) -> Bench:
        spelled = json.loads(json.dumps(topology).replace("{p}", prefix))
        spelled_policies = json.loads(json.dumps(policies or {}).replace("{p}", prefix))
        config = _write(tmp_path / f"config{len(configs)}", prefix, spelled, schemas or {},
                        spelled_policies)
        configs.append(config)
        shell: Shell
        if kind == "fake":
            shell = Fake(config)
        else:
            connection = await aio_pika.connect(AMQP_URL)
            connections.append(connection)
            await declare_config(connection, config)
            reader = await (await connection.channel()).get_underlay_channel()
            link = await open_link(AMQP_URL, "mcp-router behaviour", heartbeat=5, within=15)
            links.append(link)
            shell = Real(connection, ChannelPool(link, 2), reader)
        settler = Settler(Publisher(shell, _no_wait), Metrics(), router_user=ROUTER_USER,
                          hold_limit=0.5, holds=shell.holds)
        return Bench(kind, prefix, config, shell, settler)

    try:
        yield make
    finally:
        if connections:
            await _delete(connections[0], configs, prefix)
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.close()
        for link in links:
            await link.close()


async def _delete(connection: aio_pika.abc.AbstractConnection, configs: list[Config],
                  prefix: str) -> None:
    """Delete every entity the test's configurations declared (only those named for it)."""
    channel = await connection.channel()
    for config in configs:
        topology = config.topology
        for queue in (*topology.all_queues(), *config.retry_queues()):
            if queue.name.startswith(prefix):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue.name)
        for exchange in topology.all_exchanges():
            if exchange.name.startswith(prefix):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(exchange.name)
    with contextlib.suppress(Exception):
        await channel.close()
