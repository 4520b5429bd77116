"""Where a delivery goes when its handler failed: parked on the broker, or dead-lettered.

Guarantees: a failed round is parked in the retry queue of the next delay of
the handler's policy (``router.sdk.attempts``), or dead-lettered as
``handler_failed`` once the policy is spent or the handler raised
``PermanentError``; every publish is mandatory and confirmed (``Links.send``).
Each method returns True when the message is safely elsewhere (ack the
delivery) and False when it must be requeued; after a failed publish it
pauses first, so a requeue does not spin.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import UTC, datetime

from router.core.counts import plural
from router.core.envelope import Envelope, Properties
from router.core.ladder import GiveUp, RetryLater
from router.core.outcome import Reason
from router.errors import DeliveryFailed
from router.observe.conventions import record_failure
from router.observe.tracing import inject
from router.sdk.attempts import (
    HandlerFailure,
    HandlerState,
    Home,
    Stamp,
    dead_letter,
    next_step,
    park,
)
from router.sdk.delivery import Delivery, Failure, Handling
from router.sdk.handlers import Dispatch
from router.sdk.links import Links
from router.sdk.sealed import seal_envelope

__all__ = ["BUSY_DELAY", "REQUEUE_PAUSE", "Parking"]

log = logging.getLogger("router.sdk")

REQUEUE_PAUSE = 1.0  # before requeueing what could not be parked or dead-lettered
BUSY_DELAY = 1.0  # re-check of a message id being handled elsewhere, without broker delays


class Parking:
    """Parks and dead-letters a running service's deliveries over its ``Links``."""

    def __init__(self, handling: Handling, links: Links) -> None:
        self.handling, self.links = handling, links
        self.name = handling.name

    async def failed(self, d: Delivery, decision: Dispatch, failure: Failure) -> bool:
        """Park the delivery for the next broker round, or dead-letter it."""
        record_failure(d.span, type(failure.error).__name__, str(failure.error))
        attempts = d.state.attempts + failure.calls
        step = GiveUp(Reason.HANDLER_FAILED) if failure.permanent \
            else next_step(self.handling.policy(decision.registration), d.state)
        match step:
            case RetryLater(delay=delay):
                log.warning("%s: %s failed %s (%s); retrying in %s s", self.name,
                            d.message_id, plural(attempts, "time"), failure.text(), delay)
                return await self.park(d, replace(d.state, attempts=attempts,
                                                  retries=d.state.retries + 1),
                                       delay=delay, error=failure.text())
            case GiveUp(reason=reason):
                log.error("%s: %s failed %s (%s); dead-lettered", self.name,
                          d.message_id, plural(attempts, "time"), failure.text())
                return await self.dead_letter(d, reason, failure.text(),
                                              decision.message.message_type,
                                              attempts=attempts)

    async def recheck_later(self, d: Delivery, decision: Dispatch) -> bool:
        """Another delivery of this id is being handled (or the store is down): look again
        after the first broker delay, without counting an attempt."""
        delays = self.handling.policy(decision.registration).delays
        if not delays:
            await self.handling.sleep(BUSY_DELAY)
            return False
        return await self.park(d, d.state, delay=delays[0],
                               error="message id is being handled by another delivery")

    async def park(self, d: Delivery, state: HandlerState, *, delay: float,
                   error: str) -> bool:
        home = Home(self.name, d.queue, self.links.user)
        routing_key, properties = park(d.envelope, state, home, delay, error)
        return await self._send("", routing_key, d.envelope, properties)

    async def dead_letter(self, d: Delivery, reason: Reason, error: str,
                          message_type: str | None, *, attempts: int) -> bool:
        routing_key, properties = dead_letter(
            d.envelope, d.state, Home(self.name, d.queue, self.links.user),
            HandlerFailure(reason, error, message_type, attempts),
            Stamp(datetime.now(UTC), inject(d.span)))
        # A plain (entitled) copy is not dead-lettered plain.
        sealed = seal_envelope(d.envelope, self.handling.registry, self.handling.keyring,
                               os.urandom, self.handling.cloudevents)
        return await self._send(self.handling.dead_letter_exchange, routing_key, sealed,
                                properties)

    async def _send(self, exchange: str, routing_key: str, envelope: Envelope,
                    properties: Properties) -> bool:
        """Publish confirmed; on failure pause, so a requeue does not spin."""
        try:
            await self.links.send(exchange, routing_key, envelope.body, properties)
        except DeliveryFailed as exc:
            log.error("%s: cannot publish %s to %r/%r: %s; requeued", self.name,
                      envelope.properties.message_id, exchange, routing_key, exc)
            await self.handling.sleep(REQUEUE_PAUSE)
            return False
        return True
