"""The pure core: one envelope in, one ``Outcome`` out.

decode → validate → route.  No I/O, no clock, no randomness; the same input
always gives the same decision, which is what the unit tests pin.
"""

from __future__ import annotations

from router.config import Config
from router.decode import decode
from router.envelope import Envelope
from router.outcome import DeadLetter, Forward, Outcome, Reason
from router.validate import validate

__all__ = ["decide"]


def decide(envelope: Envelope, config: Config) -> Outcome:
    """What to do with ``envelope`` under ``config``."""
    decoded = decode(envelope)
    if isinstance(decoded, DeadLetter):
        return decoded
    valid = validate(decoded, config.registry)
    if isinstance(valid, DeadLetter):
        return valid
    copies = config.router.select(valid, envelope)
    if not copies:
        return DeadLetter(Reason.UNROUTABLE, f"no route matches message type "
                                             f"{valid.message_type!r}", valid.message_type)
    return Forward(valid, copies)
