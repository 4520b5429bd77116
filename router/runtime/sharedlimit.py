"""Rate limits shared by every replica: token buckets kept in Redis.

A rule with ``shared: true`` draws its tokens from a Redis hash instead of
the process's memory, so N router replicas together let the rule's rate
through, not N times it.  Each take is one Lua script, atomic on the Redis
server and timed by Redis's own clock (``TIME``), so replicas on machines
whose clocks differ still share one bucket fairly.  Keys expire once a
bucket would be full again.

When Redis does not answer, the message is judged by the replica's own
bucket for the rule (the limit is then per replica, as without ``shared``),
and that is logged once per outage: a rate limiter must not stop routing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis_async
from redis.exceptions import RedisError

from router.config.rate_rules import RateRule
from router.core.ratelimit import TokenBuckets

__all__ = ["RateLimiter"]

log = logging.getLogger("router.ratelimit")

TIMEOUT = 0.5  # seconds a take may wait for Redis before the local bucket decides

_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
"""


@dataclass
class RateLimiter:
    """The router's rate limits: process-local buckets, and shared ones in Redis."""

    namespace: str  # one deployment's buckets (the ingress queue's name)
    redis_url: str | None = None
    local: TokenBuckets = field(default_factory=TokenBuckets)
    _client: Any = None
    _script: Any = None
    _redis_down: bool = False

    def configure(self, rules: tuple[RateRule, ...]) -> None:
        """Use ``rules`` from now on (a reload); buckets of unchanged rules are kept."""
        if self.local.rules != rules:
            self.local = TokenBuckets(rules)

    async def take(self, publisher: str | None, message_type: str) -> RateRule | None:
        """None if the message may pass now (a token taken); else the rule it exceeds."""
        found = self.local.rule_for(message_type)
        if found is None:
            return None
        rule = found[1]
        if rule.shared and self.redis_url is not None:
            allowed = await self._take_shared(self.redis_url, rule, publisher, message_type)
            if allowed is not None:
                return None if allowed else rule
        return self.local.take(publisher, message_type, time.monotonic())

    async def _take_shared(self, url: str, rule: RateRule, publisher: str | None,
                           message_type: str) -> bool | None:
        """Whether Redis granted a token; None when Redis did not answer."""
        if self._client is None:
            self._client = redis_async.Redis.from_url(
                url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
            self._script = self._client.register_script(_TAKE)
        key = rule.shared_key(self.namespace, publisher, message_type)
        try:
            granted = await self._script(keys=[key], args=[rule.rate, rule.burst])
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.warning("shared rate limits: Redis does not answer (%s); each replica "
                            "applies rule %r at %s by itself until it does", exc, rule.match,
                            rule.where)
            self._redis_down = True
            return None
        if self._redis_down:
            log.info("shared rate limits: Redis answers again")
            self._redis_down = False
        return bool(granted)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
