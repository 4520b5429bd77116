"""The events of the delivery step (``router.core.delivery``): what just happened.

Each is its own frozen class; the interpreter (``router.broker.settlerun``)
turns the broker's answer to an action into one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.core.breakers import Admission
from router.errors import DeliveryFailed

__all__ = [
    "Admitted",
    "Begin",
    "Confirmed",
    "ConnectionLost",
    "DeadLetterRefused",
    "DeadLetterUnencodable",
    "DeadLettered",
    "Event",
    "HoldOver",
    "Nacked",
    "ParkRefused",
    "Parked",
    "PublishFailure",
    "Returned",
    "Told",
    "Unencodable",
]


@dataclass(frozen=True, slots=True)
class Begin:
    """Nothing has happened yet."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """The breaker answered."""

    admission: Admission


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The copy was confirmed at its destination after ``attempts`` publishes."""

    attempts: int


@dataclass(frozen=True, slots=True)
class Returned:
    """The broker returned the copy: no queue is bound for it."""

    attempts: int
    error: DeliveryFailed


@dataclass(frozen=True, slots=True)
class Nacked:
    """The broker refused the copy (nack, or a missing exchange)."""

    attempts: int
    error: DeliveryFailed


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """No confirm: the connection or channel went, or the confirm timed out."""

    attempts: int
    error: DeliveryFailed


@dataclass(frozen=True, slots=True)
class Unencodable:
    """The copy cannot be encoded for the wire: no retry can help."""

    attempts: int
    error: DeliveryFailed


PublishFailure = Returned | Nacked | ConnectionLost | Unencodable


@dataclass(frozen=True, slots=True)
class Told:
    """The breaker was told about the publish."""


@dataclass(frozen=True, slots=True)
class Parked:
    """The broker confirmed the park."""


@dataclass(frozen=True, slots=True)
class ParkRefused:
    """The park was not confirmed."""


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """The broker confirmed the dead letter."""


@dataclass(frozen=True, slots=True)
class DeadLetterRefused:
    """The dead letter was not confirmed."""


@dataclass(frozen=True, slots=True)
class DeadLetterUnencodable:
    """The dead letter cannot be encoded either."""


@dataclass(frozen=True, slots=True)
class HoldOver:
    """The hold ended (the broker may accept publishes again): try again."""


Event = (Begin | Admitted | Confirmed | Returned | Nacked | ConnectionLost | Unencodable | Told
         | Parked | ParkRefused | DeadLettered | DeadLetterRefused | DeadLetterUnencodable
         | HoldOver)
