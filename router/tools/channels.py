"""AsyncAPI channels and operations of a topology: who publishes what where, who receives it.

* ``ingress``: the ingress exchange; services publish every type there
  (``send.<Type>``).
* one channel per route destination, an exchange and a routing key
  (``receive.<channel>``), carrying the messages of the types its routes take;
* ``deadLetters``: the dead-letter exchange, key ``<reason>.<MessageType>``;
* one channel per declared queue and the dead-letter queue
  (``consume.<queue>``), carrying what its bindings let through
  (``router.config.topology.queues_reached``: headers bindings pass every message,
  since only the publisher knows the headers).

A route that asks for a schema ``version`` carries that version only (older
ones are upcast by the router).

AMQP channel bindings 0.3.0 describe either an exchange (``is: routingKey``)
or a queue (``is: queue``), never both: hence separate queue channels. The
router's own queues (ingress, retry tiers) are internals and left out.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from router.config.alternatives import describe, route_targets
from router.config.reach import queues_reached
from router.config.topology import Exchange, Queue, RouteSpec, Topology
from router.core import headers as xmcp
from router.core.outcome import Reason
from router.tools.bundle import pointer, unique

__all__ = ["AMQP_BINDING_VERSION", "DEAD_LETTER", "channels_and_operations", "ref"]

AMQP_BINDING_VERSION = "0.3.0"
DEAD_LETTER = "DeadLetter"  # the message key of every dead letter


def ref(*parts: str) -> dict[str, str]:
    """A Reference Object to ``#/parts...``."""
    return {"$ref": pointer(*parts)}


def _exchange_binding(exchange: Exchange, vhost: str) -> dict[str, Any]:
    return {"amqp": {"is": "routingKey",
                     "exchange": {"name": exchange.name, "type": exchange.type,
                                  "durable": exchange.durable,
                                  "autoDelete": exchange.auto_delete, "vhost": vhost},
                     "bindingVersion": AMQP_BINDING_VERSION}}


def _queue_binding(queue: Queue, vhost: str) -> dict[str, Any]:
    return {"amqp": {"is": "queue",
                     "queue": {"name": queue.name, "durable": queue.durable, "exclusive": False,
                               "autoDelete": queue.auto_delete, "vhost": vhost},
                     "bindingVersion": AMQP_BINDING_VERSION}}


class _Builder:
    """Channels and operations, with what reaches each (exchange, routing key)."""

    def __init__(self, topology: Topology, messages: Mapping[str, Any], vhost: str) -> None:
        self.topology = topology
        self.vhost = vhost
        self.exchanges = {e.name: e for e in topology.all_exchanges()}
        self.by_type: dict[str, list[str]] = {}
        for key, message in messages.items():
            if key != DEAD_LETTER:
                self.by_type.setdefault(message["name"], []).append(key)
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        # (exchange, routing key, message key): every publish the configuration makes
        self.flows: list[tuple[str, str, str]] = []

    def _channel(self, name: str, channel: dict[str, Any], messages: Iterable[str]) -> str:
        cid = unique(name, self.channels)
        channel["messages"] = {key: ref("components", "messages", key) for key in messages}
        self.channels[cid] = channel
        return cid

    def _operation(self, name: str, action: str, cid: str, keys: Iterable[str] | None = None,
                   **extra: Any) -> None:
        """An operation on channel ``cid`` for ``keys`` (default: all its messages)."""
        keys = self.channels[cid]["messages"] if keys is None else keys
        self.operations[unique(name, self.operations)] = {
            "action": action, "channel": ref("channels", cid),
            "messages": [ref("channels", cid, "messages", key) for key in keys], **extra}

    def ingress(self) -> None:
        name = self.topology.ingress.exchange
        types = sorted(self.by_type)
        cid = self._channel("ingress", {
            "address": "{messageType}",
            "title": f"Ingress exchange {name}",
            "description": "Services publish every message here, routing key and AMQP `type` "
                           "property the message type; the router validates and routes it.",
            "parameters": {"messageType": {"description": "The message type.", "enum": types}},
            "bindings": _exchange_binding(self.exchanges[name], self.vhost),
        }, (key for t in types for key in self.by_type[t]))
        for message_type in types:
            self.flows += [(name, message_type, key) for key in self.by_type[message_type]]
            self._operation(f"send.{message_type}", "send", cid, self.by_type[message_type],
                            summary=f"Publish {message_type} to the ingress exchange.",
                            bindings={"amqp": {"deliveryMode": 2, "mandatory": True,
                                               "timestamp": True,
                                               "bindingVersion": AMQP_BINDING_VERSION}})

    def _carried(self, route: RouteSpec, version: int | None) -> dict[str, list[str]]:
        """Message keys by type of the copies ``route`` sends: one version if it asks for one."""
        carried: dict[str, list[str]] = {}
        for t in sorted(self.by_type):
            if fnmatch.fnmatchcase(t, route.message_type):
                keys = self.by_type[t] if version is None else \
                    [k for k in self.by_type[t] if k == f"{t}.v{version}"]
                carried[t] = keys
        return carried

    def destinations(self) -> None:
        grouped: dict[tuple[str, str | None], list[tuple[str, dict[str, list[str]]]]] = {}
        branches: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        for route in self.topology.routes:
            for exchange, routing_key, version, branch in route_targets(route):
                carried = self._carried(route, version)
                grouped.setdefault((exchange, routing_key), []).append((route.name, carried))
                if branch is not None:
                    branches.setdefault((exchange, routing_key), []).append(branch)
                self.flows += [(exchange, routing_key or t, key)
                               for t, keys in carried.items() for key in keys]
        for (exchange, routing_key), routes in grouped.items():
            types = sorted({t for _, carried in routes for t in carried})
            keys = sorted({k for _, carried in routes for ks in carried.values() for k in ks})
            spec = {r.name: r for r in self.topology.routes}
            shown = "<message type>" if routing_key is None else repr(routing_key)
            channel: dict[str, Any] = {
                "address": routing_key if routing_key is not None else "{messageType}",
                "title": f"{exchange}, routing key {shown}",
                "description": "Routed copies from route(s) " + ", ".join(
                    f"`{name}`" + (f" when `{spec[name].when}`" if spec[name].when else "")
                    for name, _ in routes) + ".",
                "bindings": _exchange_binding(self.exchanges[exchange], self.vhost),
                xmcp.ROUTES: list(dict.fromkeys(name for name, _ in routes)),
            }
            if (exchange, routing_key) in branches:
                channel[xmcp.BRANCHES] = branches[exchange, routing_key]
                channel["description"] += " " + " ".join(
                    describe(b) for b in branches[exchange, routing_key])
            if routing_key is None:
                channel["parameters"] = {"messageType": {
                    "description": "The routing key is the message type.", "enum": types}}
            suffix = "messageType" if routing_key is None else routing_key or "empty"
            cid = self._channel(f"{exchange}.{suffix}", channel, keys)
            self._operation(f"receive.{cid}", "receive", cid,
                            summary=f"Routed copies arriving at {exchange}, routing key "
                                    f"{shown}.")

    def dead_letters(self) -> None:
        dlx = self.topology.dead_letter.exchange
        self._channel("deadLetters", {
            "address": "{reason}.{messageType}",
            "title": f"Dead-letter exchange {dlx}",
            "description": "What the router cannot deliver, with the reason.",
            "parameters": {
                "reason": {"description": xmcp.REASON, "enum": [r.value for r in Reason]},
                "messageType": {"description": "The message type (as published)."}},
            "bindings": _exchange_binding(self.exchanges[dlx], self.vhost),
        }, [DEAD_LETTER])
        self.flows += [(dlx, f"{reason.value}.{t}", DEAD_LETTER)
                       for reason in Reason for t in sorted(self.by_type) or ["Unknown"]]

    def queues(self) -> None:
        topology = self.topology
        queues = [q for q in topology.all_queues() if q.name != topology.ingress.queue]
        reached = functools.cache(functools.partial(queues_reached, topology))
        for queue in queues:
            bindings = [b for b in topology.all_bindings() if b.queue == queue.name]
            keys: list[str] = []
            for exchange, routing_key, key in self.flows:
                if key not in keys and queue.name in reached(exchange, routing_key):
                    keys.append(key)
            bound = "; ".join(f"{b.exchange} with `{b.routing_key}`" if b.routing_key
                              else b.exchange for b in bindings)
            cid = self._channel(f"queue.{queue.name}", {
                "address": queue.name,
                "title": f"Queue {queue.name}",
                "description": f"A {queue.type} queue bound to {bound or 'nothing'}.",
                "bindings": _queue_binding(queue, self.vhost),
                xmcp.QUEUE: {"type": queue.type, "arguments": dict(queue.arguments),
                                "bindings": [{"exchange": b.exchange,
                                              "routingKey": b.routing_key} for b in bindings]},
            }, keys)
            self._operation(f"consume.{queue.name}", "receive", cid,
                            summary=f"Consume {queue.name}.",
                            bindings={"amqp": {"ack": True,
                                               "bindingVersion": AMQP_BINDING_VERSION}})


def channels_and_operations(topology: Topology, messages: Mapping[str, Any],
                            vhost: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The document's ``channels`` and ``operations``; ``messages`` are its message components."""
    builder = _Builder(topology, messages, vhost)
    builder.ingress()
    builder.destinations()
    builder.dead_letters()
    builder.queues()  # last: a queue carries what every other flow lets through
    return builder.channels, builder.operations
