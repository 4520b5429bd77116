"""A service's intake: consume its queues, handle each delivery, settle it (the shell).

What it guarantees, per delivery (each a CONSUMER span continuing the
publisher's trace):

* at most ``concurrency`` handlers run per queue (prefetch and a semaphore);
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
import contextlib
import logging

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from opentelemetry.trace import SpanKind, use_span
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from router.broker.encodable import screen
from router.core.envelope import Envelope, Properties
from router.observe.conventions import process_attributes, process_name, record_failure
from router.observe.tracing import extract
from router.sdk.attempts import state_of
from router.sdk.delivery import Delivery, Failure, Handling, PermanentError
from router.sdk.handlers import Dispatch, Refuse, context_of, dispatch
from router.sdk.idempotency import Claimed, Seen
from router.sdk.links import CHANNEL_GONE, Links
from router.sdk.parking import Parking

__all__ = ["Consumer", "envelope_of"]

log = logging.getLogger("router.sdk")


def envelope_of(message: AbstractIncomingMessage) -> Envelope:
    """The core's view of an aio-pika delivery (``expiration`` back in milliseconds).

    Properties the service could not send on again (``router.broker.encodable``) are left
    out and named in ``defects``: the delivery is then ``malformed``.
    """
    expiration = message.expiration
    properties, defects = screen(Properties(
        content_type=message.content_type, content_encoding=message.content_encoding,
        headers=dict(message.headers or {}),
        delivery_mode=None if message.delivery_mode is None else int(message.delivery_mode),
        priority=message.priority, correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=None if not isinstance(expiration, int | float)
        else str(round(expiration * 1000)),
        message_id=message.message_id, timestamp=message.timestamp, type=message.type,
        user_id=message.user_id, app_id=message.app_id))
    return Envelope(body=message.body, properties=properties,
                    exchange=message.exchange or "", routing_key=message.routing_key or "",
                    redelivered=bool(message.redelivered), defects=tuple(defects))


class Consumer:
    """Consumes a running service's queues over its ``Links``; see the module docstring."""

    def __init__(self, handling: Handling, links: Links) -> None:
        self.handling, self.links = handling, links
        self.name = handling.name
        self.parking = Parking(handling, links)
        self._in_flight: set[asyncio.Task[None]] = set()

    async def consume(self, queue_name: str, group: asyncio.TaskGroup
                      ) -> tuple[AbstractQueue, str]:
        """Start consuming ``queue_name``, each delivery a task of ``group``; the consumer tag."""
        channel = await self.links.channel(self.links.consume)
        await channel.set_qos(prefetch_count=self.handling.concurrency)
        queue = await channel.get_queue(queue_name, ensure=False)
        slots = asyncio.Semaphore(self.handling.concurrency)

        async def on_message(message: AbstractIncomingMessage) -> None:
            await slots.acquire()
            try:
                task = group.create_task(self._deliver(queue_name, message, slots))
            except RuntimeError:  # the group is closing: leave the message to the broker
                slots.release()
                with contextlib.suppress(*CHANNEL_GONE):
                    await message.nack(requeue=True)
                return
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        return queue, await queue.consume(on_message)

    async def drain(self) -> None:
        """Wait for the handlers in flight; after ``drain_timeout`` cancel (and requeue) them."""
        if not self._in_flight:
            return
        _done, late = await asyncio.wait(set(self._in_flight),
                                         timeout=self.handling.drain_timeout)
        for task in late:
            task.cancel()

    async def _deliver(self, queue: str, message: AbstractIncomingMessage,
                       slots: asyncio.Semaphore) -> None:
        """Handle one delivery and settle it: ack, or requeue when its outcome failed."""
        acked = False
        try:
            envelope = envelope_of(message)
            span = self.handling.tracer.start_span(
                process_name(envelope), extract(envelope.properties.headers), SpanKind.CONSUMER,
                process_attributes(envelope, queue=queue, delivery_tag=message.delivery_tag,
                                   server=None))
            with use_span(span, end_on_exit=True, record_exception=False):
                state = state_of(envelope, self.links.user)
                acked = await self._handle(Delivery(queue, envelope, state, span))
        except asyncio.CancelledError:
            with contextlib.suppress(*CHANNEL_GONE):  # shutting down: back to the queue
                await asyncio.shield(message.nack(requeue=True))
            raise
        except Exception:
            log.exception("%s: unexpected error handling %s; requeued", self.name,
                          message.message_id)
        finally:
            slots.release()
        try:
            if acked:
                await message.ack()
            else:
                await message.nack(requeue=True)
        except CHANNEL_GONE as exc:  # the broker requeues it when the channel is gone
            log.warning("%s: cannot settle %s: %s", self.name, message.message_id, exc)

    async def _handle(self, d: Delivery) -> bool:
        """Whatever happens to the delivery; True to ack it, False to requeue it."""
        decision = dispatch(d.envelope, self.handling.handlers.get(d.queue, {}),
                            self.handling.registry, self.name, keyring=self.handling.keyring,
                            cloudevents=self.handling.cloudevents)
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
            return waits[min(retry_state.attempt_number, len(waits)) - 1] if waits else 0.0

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
