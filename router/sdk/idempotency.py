"""Handle each ``message_id`` once per service, under at-least-once delivery.

A handler runs only after its service *claims* the message id; the claim
becomes *done* when the handler succeeded (before the ack), and is *released*
when it failed, so the message's retry or replay can claim it again:

* ``Claimed``: nobody had it, run the handler;
* ``Seen.DONE``: already handled, ack the duplicate without calling it;
* ``Seen.BUSY``: another delivery of the same id is being handled right now
  (a duplicate in flight, or a claim left by a crashed instance until its
  ``claim_ttl`` runs out): the service parks this delivery on the broker and
  looks again later, instead of dropping what might be the only copy.

``claim_ttl`` must exceed the longest a handler can take, all in-process
attempts included; ``done_ttl`` is how long a handled id is remembered, and
so the window in which a duplicate is recognised.

``InMemoryIdempotency`` (one process, bounded LRU) is the default;
``RedisIdempotency`` shares the keys between replicas (``SET NX EX``).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import redis.asyncio as aioredis

__all__ = ["Claimed", "Idempotency", "InMemoryIdempotency", "RedisIdempotency", "Seen"]

DEFAULT_CLAIM_TTL = 300.0  # seconds: longer than any handler with its in-process retries
DEFAULT_DONE_TTL = 24 * 3600.0


class Seen(Enum):
    DONE = "done"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claimed:
    """This caller holds the id; ``token`` proves it when releasing."""

    key: str
    token: str


class Idempotency(Protocol):
    """Claims on message ids, scoped by the caller (the service name is part of ``key``)."""

    async def claim(self, key: str) -> Claimed | Seen: ...

    async def done(self, claimed: Claimed) -> None: ...

    async def release(self, claimed: Claimed) -> None: ...

    async def close(self) -> None: ...


class InMemoryIdempotency:
    """Claims in this process: at most ``max_entries`` ids (least recently used go first).

    Replicas do not see each other's claims: with several instances on one
    queue, use ``RedisIdempotency``.
    """

    def __init__(self, *, max_entries: int = 100_000, claim_ttl: float = DEFAULT_CLAIM_TTL,
                 done_ttl: float = DEFAULT_DONE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries, self.claim_ttl, self.done_ttl = max_entries, claim_ttl, done_ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()  # token, expiry

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _put(self, key: str, token: str, ttl: float) -> None:
        self._entries[key] = (token, self._clock() + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def claim(self, key: str) -> Claimed | Seen:
        token = self._live(key)
        if token is not None:
            return Seen.DONE if token == Seen.DONE.value else Seen.BUSY
        claimed = Claimed(key, uuid.uuid4().hex)
        self._put(key, claimed.token, self.claim_ttl)
        return claimed

    async def done(self, claimed: Claimed) -> None:
        self._put(claimed.key, Seen.DONE.value, self.done_ttl)

    async def release(self, claimed: Claimed) -> None:
        if self._live(claimed.key) == claimed.token:
            del self._entries[claimed.key]

    async def close(self) -> None:
        self._entries.clear()


# Delete the key only while it still holds our claim (not someone else's, not "done").
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) " \
           "else return 0 end"


class RedisIdempotency:
    """Claims in Redis, shared by every replica: ``SET key token NX EX claim_ttl``.

    Keys are ``<prefix><key>``.  A claim whose holder died expires after
    ``claim_ttl``; ``done`` overwrites it with ``done`` for ``done_ttl``.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "mcp:idem:",
                 claim_ttl: float = DEFAULT_CLAIM_TTL, done_ttl: float = DEFAULT_DONE_TTL
                 ) -> None:
        self.client, self.prefix = client, prefix
        self.claim_ttl, self.done_ttl = claim_ttl, done_ttl

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisIdempotency:
        """A client for ``url`` (``redis://host:6379/0``); connects on first use."""
        return cls(aioredis.Redis.from_url(url), **kwargs)

    def _ms(self, seconds: float) -> int:
        return max(1, round(seconds * 1000))

    async def claim(self, key: str) -> Claimed | Seen:
        claimed = Claimed(self.prefix + key, uuid.uuid4().hex)
        for _ in range(3):  # the key may expire between SET NX and GET
            if await self.client.set(claimed.key, claimed.token, nx=True,
                                     px=self._ms(self.claim_ttl)):
                return claimed
            held = await self.client.get(claimed.key)
            if held is not None:
                return Seen.DONE if held == Seen.DONE.value.encode() else Seen.BUSY
        return Seen.BUSY

    async def done(self, claimed: Claimed) -> None:
        await self.client.set(claimed.key, Seen.DONE.value, px=self._ms(self.done_ttl))

    async def release(self, claimed: Claimed) -> None:
        await self.client.eval(_RELEASE, 1, claimed.key, claimed.token)

    async def close(self) -> None:
        await self.client.aclose()
