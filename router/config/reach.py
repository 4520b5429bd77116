"""Where a publish lands: AMQP binding matching over a topology (pure).

Breakers, discovery, the AsyncAPI channels, the SDK and the test harness all
need to know which declared queues a copy published to an exchange with a
routing key reaches; this is the one place that answers it.
"""

from __future__ import annotations

from router.config.topology import Topology

__all__ = ["queues_reached", "topic_matches"]


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more (RabbitMQ tutorial 5)."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


def queues_reached(topology: Topology, exchange: str, routing_key: str) -> tuple[str, ...]:
    """The topology queues a publish to ``exchange`` with ``routing_key`` lands in.

    Headers exchanges (and unknown types) count every bound queue: conservative.
    """
    types = {e.name: e.type for e in topology.all_exchanges()}
    kind = types.get(exchange)
    found: list[str] = []
    for binding in topology.all_bindings():
        if binding.exchange != exchange or binding.queue in found:
            continue
        if kind == "direct":
            hit = binding.routing_key == routing_key
        elif kind == "topic":
            hit = topic_matches(binding.routing_key, routing_key)
        else:  # fanout, headers, anything else: every bound queue may receive it
            hit = True
        if hit:
            found.append(binding.queue)
    return tuple(found)
