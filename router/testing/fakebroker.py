"""An in-memory broker for the settle/delivery behaviour suite (``tests/behaviour``).

It implements exactly what the ``Settler`` interpreter needs from the broker
shell, with RabbitMQ's answers:

* ``publish`` (``router.broker.publish.Channels``): one message, mandatory, with
  a confirm: *confirmed* once some queue took it; *returned* (``Unroutable``)
  when no queue is bound for it or the exchange does not exist; *nacked*
  (``Refused``) or *connection lost* (``TransientFailure``) when scripted with
  ``fail``; ``wait_usable`` says whether publishing works;
* deliveries: ``take`` the next message of a queue and ``settle`` it as the
  verdict says (ack, requeue as redelivered, reject);
* live-consumer facts: ``holds`` applies the ``unconsumed`` rule of a route in
  ``unconsumed`` (the routes no live service consumes).

Exchanges, queues and bindings are a configuration's topology (and its retry
queues).  Topic (``*``, ``#``), direct and fanout exchanges route; the default
exchange ``""`` delivers to the queue named by the routing key.  TTLs, queue
limits and broker-side dead-lettering are not modelled.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from router.config.configuration import Config
from router.config.unconsumed_rules import UnconsumedAction, UnconsumedRule, unconsumed_rule
from router.core.deliverysteps import Verdict
from router.core.envelope import Envelope, Properties
from router.errors import DeliveryFailed, Unroutable

__all__ = ["FakeBroker", "Taken", "topic_matches"]


@dataclass(frozen=True, slots=True)
class Taken:
    """A message taken from a queue, to be settled."""

    queue: str
    tag: int
    envelope: Envelope


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more."""
    return _match(pattern.split(".") if pattern else [], key.split(".") if key else [])


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


@dataclass
class FakeBroker:
    """Exchanges, queues and bindings in memory; publishes answered as RabbitMQ would."""

    exchanges: dict[str, str] = field(default_factory=dict)  # name -> type
    queues: dict[str, deque[Envelope]] = field(default_factory=dict)
    bindings: list[tuple[str, str, str]] = field(default_factory=list)  # exchange, queue, key
    unconsumed: set[str] = field(default_factory=set)  # routes no live service consumes
    usable: bool = True  # False: as during a memory alarm, nothing is confirmed
    _failures: dict[str, Iterator[DeliveryFailed]] = field(default_factory=dict)
    _unacked: dict[int, Taken] = field(default_factory=dict)
    _tags: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def of(cls, config: Config) -> FakeBroker:
        """A broker with ``config``'s topology and retry queues declared."""
        broker = cls()
        topology = config.topology
        for exchange in topology.all_exchanges():
            broker.exchanges[exchange.name] = exchange.type
        for queue in (*topology.all_queues(), *config.retry_queues()):
            broker.queues.setdefault(queue.name, deque())
        broker.bindings.extend((b.exchange, b.queue, b.routing_key)
                               for b in topology.all_bindings())
        return broker

    def fail(self, exchange: str, *errors: DeliveryFailed) -> None:
        """The next publishes to ``exchange`` fail with ``errors``, in order."""
        self._failures[exchange] = iter(errors)

    async def publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Properties) -> None:
        """Publish once, mandatory; return when confirmed, raise ``DeliveryFailed`` if not."""
        scripted = next(self._failures.get(exchange, iter(())), None)
        if scripted is not None:
            raise scripted
        targets = self._route(exchange, routing_key)
        if not targets:
            raise Unroutable(f"returned by the broker: 312 NO_ROUTE (exchange {exchange!r}, "
                             f"routing key {routing_key!r})")
        envelope = Envelope(body, properties, exchange, routing_key)
        for queue in targets:
            self.queues[queue].append(envelope)

    async def wait_usable(self, within: float) -> bool:
        """Whether publishing works; the fake never waits."""
        return self.usable

    def take(self, queue: str) -> Taken | None:
        """The next message of ``queue`` (unacked until settled), or None."""
        waiting = self.queues.get(queue)
        if not waiting:
            return None
        taken = Taken(queue, next(self._tags), waiting.popleft())
        self._unacked[taken.tag] = taken
        return taken

    def settle(self, taken: Taken, verdict: Verdict) -> None:
        """Ack, requeue (at the head, redelivered) or reject the taken message."""
        del self._unacked[taken.tag]
        if verdict is Verdict.REQUEUE:
            self.queues[taken.queue].appendleft(replace(taken.envelope, redelivered=True))

    def messages(self, queue: str) -> list[Envelope]:
        """Every message waiting in ``queue``, taken off it."""
        waiting = self.queues.get(queue, deque())
        found = list(waiting)
        waiting.clear()
        return found

    def holds(self, route: str, message_type: str, config: Config) -> UnconsumedRule | None:
        """The ``unconsumed`` rule for a copy of ``route``, when no live service consumes it."""
        if route not in self.unconsumed:
            return None
        rule = unconsumed_rule(config.policies.unconsumed, message_type)
        return None if rule is None or rule.action == UnconsumedAction.DELIVER else rule

    def _route(self, exchange: str, routing_key: str) -> list[str]:
        if exchange == "":
            return [routing_key] if routing_key in self.queues else []
        kind = self.exchanges.get(exchange)
        if kind is None:
            return []  # RabbitMQ closes the channel (404); the shell reports it unroutable
        found = []
        for bound, queue, key in self.bindings:
            if bound != exchange or queue in found:
                continue
            if kind == "fanout" or (kind == "direct" and key == routing_key) or \
                    (kind == "topic" and topic_matches(key, routing_key)):
                found.append(queue)
        return found
