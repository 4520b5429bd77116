"""The pure core: one envelope in, one ``Outcome`` out.

``original`` recognises a copy coming back from the retry tier; then
decode → validate → route.  No I/O, no clock, no randomness; the same input
always gives the same decision, which is what the unit tests pin.
"""

from __future__ import annotations

from router.admission import admit, copy_overrides
from router.config import Config
from router.decode import decode, message_type_of
from router.envelope import Envelope
from router.outcome import Copy, DeadLetter, Forward, Outcome, Reason
from router.retry import RetryState, restore, retry_state_of
from router.validate import validate

__all__ = ["decide", "original"]


def original(envelope: Envelope, router_user: str | None) -> tuple[Envelope, RetryState | None]:
    """The message as first published, and its retry state if the router parked it."""
    state = retry_state_of(envelope, router_user)
    return (envelope, None) if state is None else (restore(envelope, state), state)


def decide(envelope: Envelope, config: Config, retry: RetryState | None = None) -> Outcome:
    """What to do with ``envelope`` under ``config``.

    A copy back from the retry tier (``retry``) is checked and routed again like
    any message, then only the copy that failed is forwarded.
    """
    policies = config.policies
    refused = admit(envelope, message_type_of(envelope), policies.authorization, policies.limits)
    if refused is not None:
        return refused
    decoded = decode(envelope)
    if isinstance(decoded, DeadLetter):
        return decoded
    valid = validate(decoded, config.registry)
    if isinstance(valid, DeadLetter):
        return valid
    copies = config.router.select(valid, envelope)
    overrides = copy_overrides(valid.message_type, policies.limits, policies.priority,
                               envelope.properties.expiration)
    if retry is not None and retry.route:  # a copy, not a whole message held back by shaping
        wanted = Copy(retry.route, retry.exchange, retry.routing_key)
        if wanted not in copies:
            return DeadLetter(Reason.UNROUTABLE, f"route {retry.route!r} no longer sends this "
                                                 f"message to {retry.exchange!r} "
                                                 f"[{retry.routing_key}]",
                              valid.message_type, retry.route, wanted)
        return Forward(valid, (wanted,), retry, overrides)
    if not copies:
        return DeadLetter(Reason.UNROUTABLE, f"no route matches message type "
                                             f"{valid.message_type!r}", valid.message_type)
    return Forward(valid, copies, None, overrides)
