"""A service's intake: consume its queues, handle each delivery, settle it (the shell).

What it guarantees, per delivery (each a CONSUMER span continuing the
publisher's trace):

* at most ``concurrency`` handlers run per queue (the prefetch window); each
  delivery is a task of the consume loop the router uses too
  (``router.broker.consume``), read by the router's converter
  (``router.broker.converter``);
* the body is decoded and validated against the registry as the router does;
  invalid input and types without a handler are dead-lettered at once
  (``router.sdk.handlers``);
* with ``idempotency``, a ``message_id`` already handled is acked without
  calling the handler (``router.sdk.idempotency``);
* a handler that raises is called again in process (tenacity), then parked on
  the broker or dead-lettered (``router.sdk.parking``); ``PermanentError``
  skips the retries;
* every delivery is settled explicitly: acked once its outcome (handled,
  parked, dead-lettered) is done and confirmed by the broker, or requeued
  when that was impossible.  Never ``message.process()``, which would
  dead-letter a healthy message cancelled by a shutdown (STYLE.md).
"""

from __future__ import annotations

import asyncio
import logging

from opentelemetry.trace import SpanKind, use_span
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from router.broker.amqp import Delivered
from router.broker.consume import ConsumeLoop, Verdict
from router.broker.converter import envelope_of
from router.core.ladder import backoff_after
from router.observe.conventions import process_attributes, process_name, record_failure
from router.observe.tracing import extract
from router.sdk.attempts import state_of
from router.sdk.delivery import Delivery, Failure, Handling, PermanentError
from router.sdk.handlers import Dispatch, Reading, Refuse, context_of, dispatch
from router.sdk.idempotency import Claimed, Seen
from router.sdk.links import Links
from router.sdk.parking import Parking

__all__ = ["Consumer", "envelope_of"]

log = logging.getLogger("router.sdk")


class Consumer:
    """Consumes a running service's queues over its ``Links``; see the module docstring."""

    def __init__(self, handling: Handling, links: Links) -> None:
        self.handling, self.links = handling, links
        self.name = handling.name
        self.parking = Parking(handling, links)

    async def intake(self, queue_name: str) -> ConsumeLoop:
        """The consume loop of ``queue_name`` on a channel of its own (``ConsumeLoop.run``
        consumes it until stopped, then drains it)."""
        channel = await self.links.intake(prefetch=self.handling.concurrency)

        async def handle(message: Delivered) -> Verdict:
            return await self._deliver(queue_name, message)

        return ConsumeLoop(channel, queue_name, handle,
                           drain_timeout=self.handling.drain_timeout)

    async def _deliver(self, queue: str, message: Delivered) -> Verdict:
        """Handle one delivery: ACK, or REQUEUE when its outcome failed (or on a shutdown,
        the loop requeues a cancelled delivery)."""
        # The message id as it came: a service keys idempotency on the publisher's id only.
        envelope = envelope_of(message, invent_id=False)
        try:
            span = self.handling.tracer.start_span(
                process_name(envelope), extract(envelope.properties.headers), SpanKind.CONSUMER,
                process_attributes(envelope, queue=queue, delivery_tag=message.delivery_tag,
                                   server=None))
            with use_span(span, end_on_exit=True, record_exception=False):
                state = state_of(envelope, self.links.user)
                acked = await self._handle(Delivery(queue, envelope, state, span))
        except Exception:
            log.exception("%s: unexpected error handling %s; requeued", self.name,
                          envelope.properties.message_id)
            return Verdict.REQUEUE
        return Verdict.ACK if acked else Verdict.REQUEUE

    async def _handle(self, d: Delivery) -> bool:
        """Whatever happens to the delivery; True to ack it, False to requeue it."""
        decision = dispatch(d.envelope, self.handling.handlers.get(d.queue, {}),
                            self.handling.registry, self.name,
                            reading=Reading(self.handling.keyring, self.handling.cloudevents))
        if isinstance(decision, Refuse):
            log.warning("%s: %s %s dead-lettered as %s: %s", self.name, decision.message_type,
                        d.message_id, decision.reason.value, decision.error)
            record_failure(d.span, decision.reason.value, decision.error)
            return await self.parking.dead_letter(d, decision.reason, decision.error,
                                                  decision.message_type,
                                                  attempts=d.state.attempts)
        claim = await self._claim(d.message_id)
        if claim is Seen.DONE:
            log.info("%s: %s already handled: duplicate acked", self.name, d.message_id)
            d.span.add_event("duplicate")
            return True
        if claim is Seen.BUSY:
            return await self.parking.recheck_later(d, decision)
        try:
            failure = await self._attempts(d, decision)
        except BaseException:
            await self._release(claim)
            raise
        if failure is None:
            await self._done(claim)
            return True
        await self._release(claim)
        return await self.parking.failed(d, decision, failure)

    async def _attempts(self, d: Delivery, decision: Dispatch) -> Failure | None:
        """This round's in-process calls (tenacity); None when one succeeded."""
        registration = decision.registration
        policy = self.handling.policy(registration)
        waits = policy.backoff_delays()
        calls = 0

        def wait(retry_state: RetryCallState) -> float:
            return backoff_after(waits, retry_state.attempt_number)

        def note(retry_state: RetryCallState) -> None:
            outcome = retry_state.outcome
            error = outcome.exception() if outcome is not None else None
            log.info("%s: %s attempt %d failed: %s", self.name, d.message_id,
                     d.state.attempts + calls, error)

        # A fresh AsyncRetrying per delivery: it keeps per-run state (STYLE.md).
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts), wait=wait,
            retry=retry_if_not_exception_type(PermanentError), sleep=self.handling.sleep,
            before_sleep=note, reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    calls += 1
                    ctx = context_of(d.envelope, decision, queue=d.queue,
                                     attempt=d.state.attempts + calls)
                    async with asyncio.timeout(self.handling.handler_timeout):
                        await registration.handler(decision.message.body, ctx)
        except Exception as exc:  # noqa: BLE001 -- whatever a handler raises is its failure
            return Failure(exc, calls)
        return None

    # -- idempotency ----------------------------------------------------------------------

    async def _claim(self, message_id: str | None) -> Claimed | Seen | None:
        """None when there is nothing to claim; a store that fails counts as busy."""
        store = self.handling.idempotency
        if store is None or not message_id:
            return None
        try:
            return await store.claim(f"{self.name}:{message_id}")
        except Exception as exc:  # noqa: BLE001 -- any store failure: handle nothing blind
            log.warning("%s: idempotency store unavailable (%s); %s retried later",
                        self.name, exc, message_id)
            return Seen.BUSY

    async def _done(self, claim: Claimed | None) -> None:
        store = self.handling.idempotency
        if claim is not None and store is not None:
            try:
                await store.done(claim)
            except Exception as exc:  # noqa: BLE001 -- handled already; a duplicate may rerun
                log.warning("%s: cannot record %s as handled: %s", self.name, claim.key, exc)

    async def _release(self, claim: Claimed | None) -> None:
        store = self.handling.idempotency
        if claim is not None and store is not None:
            try:
                await asyncio.shield(store.release(claim))
            except Exception as exc:  # noqa: BLE001 -- the claim then expires by its TTL
                log.warning("%s: cannot release %s: %s", self.name, claim.key, exc)
