"""One delivery to a service, as plain values: what it is, how it is handled, how it failed.

Guarantees: every value here is frozen; ``Handling`` is taken when a service
starts, so every delivery of one run is handled alike; ``PermanentError`` is
the one exception a handler raises to skip the retry ladder
(``router.sdk.attempts``).  No I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from opentelemetry.trace import Span, Tracer

from router.config.cloudevents_spec import CloudEventsSpec
from router.config.keyring import Keyring
from router.config.policies import RetryPolicy
from router.config.schemas import SchemaRegistry
from router.core.envelope import Envelope
from router.sdk.attempts import HandlerState
from router.sdk.handlers import Registration, policy_of
from router.sdk.idempotency import Idempotency

__all__ = ["Delivery", "Failure", "Handling", "PermanentError", "Sleep"]

Sleep = Callable[[float], Awaitable[None]]


class PermanentError(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it now, no retries."""


@dataclass(frozen=True, slots=True)
class Handling:
    """How a running service handles its deliveries: its handlers (per queue, per type)
    and the options it was started with."""

    name: str  # the service's
    handlers: Mapping[str, Mapping[str, Registration]]
    registry: SchemaRegistry | None
    retry: RetryPolicy  # for handlers without their own
    idempotency: Idempotency | None
    handler_timeout: float | None
    tracer: Tracer
    dead_letter_exchange: str
    concurrency: int
    drain_timeout: float
    sleep: Sleep
    keyring: Keyring | None = None  # opens sealed fields for handlers, seals dead letters
    cloudevents: CloudEventsSpec = field(default_factory=CloudEventsSpec)

    def policy(self, registration: Registration | None) -> RetryPolicy:
        return policy_of(registration, self.retry)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery being handled: where it came from, its ladder state, its span."""

    queue: str
    envelope: Envelope
    state: HandlerState
    span: Span

    @property
    def message_id(self) -> str | None:
        return self.envelope.properties.message_id


@dataclass(frozen=True, slots=True)
class Failure:
    """How this round's in-process attempts ended."""

    error: BaseException
    calls: int

    @property
    def permanent(self) -> bool:
        return isinstance(self.error, PermanentError)

    def text(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"
