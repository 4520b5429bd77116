"""The one exception tree of mcp-router.

::

    RouterError
    ├── ConfigError            configuration files are wrong; carries every Problem
    ├── TopologyConflict       the broker holds an entity that differs from the file
    ├── BrokerUnavailable      cannot connect to RabbitMQ at all
    └── DeliveryFailed         one outgoing copy was not accepted by the broker
        ├── Unroutable         basic.return: no queue is bound for it (permanent now,
        │                      though a binding may appear later)
        ├── Unsendable         the message cannot be encoded on the wire (permanent)
        └── TransientFailure   nack, timeout, lost channel/connection: try again
            └── Refused        basic.nack: this destination refused it (a full queue
                               with reject-publish, no quorum): the destination's fault

Invalid *input* is never an exception: the pure pipeline turns it into a
``DeadLetter`` value.  Exceptions are for the world outside the process.
aio-pika/aiormq exceptions are translated into this tree in exactly one place,
``router.broker.amqp.translate``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "DeliveryFailed",
    "Problem",
    "Refused",
    "RouterError",
    "TopologyConflict",
    "TransientFailure",
    "Unroutable",
    "Unsendable",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file, printed as ``FILE[:LINE]: message``."""

    file: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class RouterError(Exception):
    """Base of every error mcp-router raises on purpose."""


class ConfigError(RouterError):
    """The configuration directory does not load; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TopologyConflict(RouterError):
    """Declaring the topology met entities that exist with other settings."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__("\n".join(conflicts))


class BrokerUnavailable(RouterError):
    """RabbitMQ could not be reached (refused, DNS, authentication)."""


class DeliveryFailed(RouterError):
    """An outgoing message was not confirmed by the broker."""


class Unroutable(DeliveryFailed):
    """The broker returned a mandatory message: no queue is bound for it."""


class Unsendable(DeliveryFailed):
    """The client library cannot encode the message (a header out of range): permanent."""


class TransientFailure(DeliveryFailed):
    """Negative confirm, timeout or a lost connection: the same publish may succeed later."""


class Refused(TransientFailure):
    """The broker nacked the copy: a queue it would reach refused it (full, no quorum)."""
