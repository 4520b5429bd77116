"""The one exception tree of mcp-router.

::

    RouterError
    ├── ConfigError            configuration files are wrong; carries every Problem
    ├── TopologyConflict       the broker holds an entity that differs from the file
    ├── BrokerUnavailable      T  cannot connect to RabbitMQ at all (refused, DNS, handshake,
    │                             authentication): the service tries again later
    ├── BrokerFailure             one operation on an open connection failed
    │   ├── ChannelGone        T  the channel or its connection closed under it; whatever
    │   │                         was delivered and not acked returns to the queue
    │   ├── NoAnswer           T  the broker did not answer in time
    │   └── BrokerRefused      P  the broker refused the operation itself (403, 405, 406, a
    │       │                     connection error naming a wrong request): asking again
    │       │                     the same way gets the same answer
    │       └── NotFound       P  404 NOT_FOUND: the exchange or queue does not exist
    └── DeliveryFailed            one outgoing copy was not accepted by the broker
        ├── Unroutable         P  basic.return: no queue is bound for it (permanent now,
        │                         though a binding may appear later)
        ├── Unsendable         P  the message cannot be encoded on the wire
        └── TransientFailure   T  nack, timeout, lost channel/connection: try again
            └── Refused        T  basic.nack: this destination refused it (a full queue
                                  with reject-publish, no quorum): the destination's fault

``T``: transient (``transient`` is True: the same thing may work later, retry);
``P``: permanent (dead-letter or report now).  Invalid *input* is never an
exception: the pure pipeline turns it into a ``DeadLetter`` value.  Exceptions
are for the world outside the process.  aio-pika, aiormq and pamqp exceptions
are translated into this tree in exactly one place, ``router.broker.failures``
(its table, and ``translated()`` at every call into the client library).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "BrokerFailure",
    "BrokerRefused",
    "BrokerUnavailable",
    "ChannelGone",
    "ConfigError",
    "DeliveryFailed",
    "NoAnswer",
    "NotFound",
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

    transient: ClassVar[bool] = False  # True: the same operation may succeed later


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

    transient = True


class BrokerFailure(RouterError):
    """An operation on an open connection to the broker failed (see the subclasses)."""


class ChannelGone(BrokerFailure):
    """The channel or its connection closed; what it had not acked returns to the queue."""

    transient = True


class NoAnswer(BrokerFailure):
    """The broker did not answer within the time allowed."""

    transient = True


class BrokerRefused(BrokerFailure):
    """The broker refused the operation itself (access, a lock, a precondition)."""


class NotFound(BrokerRefused):
    """404 NOT_FOUND: the exchange or queue named does not exist."""


class DeliveryFailed(RouterError):
    """An outgoing message was not confirmed by the broker."""


class Unroutable(DeliveryFailed):
    """The broker returned a mandatory message: no queue is bound for it."""


class Unsendable(DeliveryFailed):
    """The client library cannot encode the message (a header out of range): permanent."""


class TransientFailure(DeliveryFailed):
    """Negative confirm, timeout or a lost connection: the same publish may succeed later."""

    transient = True


class Refused(TransientFailure):
    """The broker nacked the copy: a queue it would reach refused it (full, no quorum)."""
