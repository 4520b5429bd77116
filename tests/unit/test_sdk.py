"""router.sdk's pure parts: dispatch, the retry ladder, in-memory idempotency, registration."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

import router.sdk
from router.config.policies import RetryPolicy
from router.config.schemas import SchemaRegistry
from router.core.envelope import Envelope
from router.core.ladder import GiveUp, RetryLater
from router.core.outcome import Reason
from router.sdk import Context, InMemoryIdempotency, Service
from router.sdk.attempts import (
    HandlerFailure,
    HandlerState,
    Home,
    Stamp,
    dead_letter,
    next_step,
    park,
    state_of,
)
from router.sdk.handlers import Dispatch, Refuse, Registration, context_of, dispatch
from router.sdk.idempotency import Claimed, Seen
from tests.unit.conftest import ORDER_SCHEMA, LoadRegistry, make_envelope

ORDER = {"order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11", "quantity": 2}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def _ignore(body: Any, ctx: Context) -> None:
    return None


def _handlers(*registrations: Registration) -> dict[str, Registration]:
    return {r.message_type: r for r in registrations}


@pytest.fixture
def orders(registry: LoadRegistry) -> SchemaRegistry:
    """``Order`` versions 1 and 2 (the same schema)."""
    found, problems = registry({"Order/v1.json": ORDER_SCHEMA, "Order/v2.json": ORDER_SCHEMA})
    assert problems == []
    return found


def _copy(body: Any = ORDER, **properties: Any) -> Envelope:
    """A routed copy as the service receives it (no user_id: the router removes it)."""
    properties.setdefault("type", "Order")
    properties.setdefault("message_id", "m-1")
    return make_envelope(body, exchange="orders", routing_key="order.created", **properties)


def test_the_package_exports_what_services_use() -> None:
    """router.sdk's public names are pinned."""
    assert router.sdk.__all__ == [
        "CONTROL_EXCHANGE", "Announcement", "Context", "Handler", "Idempotency",
        "InMemoryIdempotency", "InvalidMessage", "PermanentError", "RedisIdempotency",
        "Service", "ServicePublisher", "keyring_of"]


def test_a_valid_message_goes_to_its_types_handler_with_the_newest_version(
        orders: SchemaRegistry) -> None:
    """Without x-schema-version the body is checked against, and reported as, the newest."""
    registration = Registration("Order", _ignore)

    decision = dispatch(_copy(), _handlers(registration), orders, "billing")

    assert isinstance(decision, Dispatch)
    assert (decision.registration, decision.message.body, decision.version) == \
        (registration, ORDER, 2)


def test_a_type_without_handler_is_unhandled(orders: SchemaRegistry) -> None:
    """No handler for the type: dead-lettered as unhandled, naming the service."""
    decision = dispatch(_copy(), {}, orders, "billing")

    assert decision == Refuse(Reason.UNHANDLED, "billing has no handler for Order", "Order")


def test_a_version_the_handler_does_not_accept_is_unhandled(orders: SchemaRegistry) -> None:
    """A handler for v1 only refuses a v2 message, saying which versions it takes."""
    handlers = _handlers(Registration("Order", _ignore, frozenset({1})))

    decision = dispatch(_copy(headers={"x-schema-version": 2}), handlers, orders, "billing")

    assert decision == Refuse(Reason.UNHANDLED, "billing handles Order v1, not v2", "Order")


@pytest.mark.parametrize(("body", "headers", "reason"), [
    (b"{not json", {}, Reason.MALFORMED),
    ({"order_id": "x", "quantity": 0}, {}, Reason.SCHEMA_INVALID),
    (ORDER, {"x-schema-version": 7}, Reason.SCHEMA_INVALID),
    (ORDER, {"x-schema-version": "two"}, Reason.MALFORMED),
])
def test_input_that_fails_the_routers_checks_is_refused_the_same_way(
        orders: SchemaRegistry, body: Any, headers: dict[str, Any], reason: Reason) -> None:
    """Decoding and validation are the router's: same reasons, never retried."""
    handlers = _handlers(Registration("Order", _ignore))

    decision = dispatch(_copy(body, headers=headers), handlers, orders, "billing")

    assert isinstance(decision, Refuse)
    assert decision.reason is reason


def test_without_a_registry_nothing_is_validated() -> None:
    """A service without registry hands any JSON body to the handler, version as sent."""
    handlers = _handlers(Registration("Order", _ignore))

    decision = dispatch(_copy({"anything": True}), handlers, None, "billing")

    assert isinstance(decision, Dispatch)
    assert decision.version is None


def test_the_context_names_publisher_route_and_attempt(orders: SchemaRegistry) -> None:
    """The handler's context reads the router's x-mcp-publisher and x-mcp-route."""
    envelope = _copy(headers={"x-mcp-publisher": b"shop", "x-mcp-route": "order-created"},
                     correlation_id="c-9")
    decision = dispatch(envelope, _handlers(Registration("Order", _ignore)), orders, "billing")
    assert isinstance(decision, Dispatch)

    ctx = context_of(envelope, decision, queue="billing.orders", attempt=3)

    assert (ctx.message_id, ctx.message_type, ctx.version, ctx.attempt, ctx.queue) == \
        ("m-1", "Order", 2, 3, "billing.orders")
    assert (ctx.publisher, ctx.route, ctx.correlation_id) == ("shop", "order-created", "c-9")


def test_retry_headers_are_believed_only_from_the_services_own_user() -> None:
    """A routed copy (no user_id) starts fresh whatever headers it carries; a parked one not."""
    forged = {"x-mcp-attempts": 99, "x-mcp-retries": 99}

    assert state_of(_copy(headers=forged), "billing") == \
        HandlerState(0, 0, "orders", "order.created")
    assert state_of(_copy(headers=forged, user_id="shop"), "billing").retries == 0
    parked = make_envelope(ORDER, exchange="", routing_key="billing.orders", user_id="billing",
                           headers={**forged, "x-mcp-original-exchange": "orders",
                                    "x-mcp-original-routing-key": "order.created"})
    assert state_of(parked, "billing") == HandlerState(99, 99, "orders", "order.created")


def test_each_broker_delay_is_one_round_then_the_message_is_given_up() -> None:
    """Delays [1s, 10s]: round 0 waits 1 s, round 1 waits 10 s, round 2 gives up."""
    policy = RetryPolicy(delays=(1.0, 10.0))

    steps = [next_step(policy, HandlerState(retries=n)) for n in range(3)]

    assert steps == [RetryLater(1.0), RetryLater(10.0), GiveUp(Reason.HANDLER_FAILED)]


def test_a_parked_message_carries_its_count_and_the_services_user() -> None:
    """Parking targets <queue>.retry.<ms>ms, keeps the message, drops the broker's x-death."""
    envelope = _copy(headers={"traceparent": "00-ab-cd-01", "x-death": [{"count": 1}],
                              "x-mcp-route": "order-created"})
    state = HandlerState(attempts=3, retries=1, original_exchange="orders",
                         original_routing_key="order.created")

    key, properties = park(envelope, state, Home("billing", "billing.orders", "billing"), 10.0,
                           "ValueError: boom")

    assert key == "billing.orders.retry.10000ms"
    assert properties.user_id == "billing"
    assert (properties.type, properties.message_id) == ("Order", "m-1")
    assert dict(properties.headers) == {
        "traceparent": "00-ab-cd-01", "x-mcp-route": "order-created",
        "x-mcp-attempts": 3, "x-mcp-retries": 1, "x-mcp-last-error": "ValueError: boom",
        "x-mcp-original-exchange": "orders", "x-mcp-original-routing-key": "order.created"}


def test_a_dead_letter_has_the_routers_headers_and_points_back_at_the_queue() -> None:
    """handler_failed letters list and replay like the router's; --to '' reaches the queue."""
    envelope = make_envelope(ORDER, exchange="", routing_key="billing.orders", type="Order",
                             message_id="m-1", user_id="billing",
                             headers={"x-mcp-publisher": "shop", "x-mcp-route": "order-created",
                                      "x-mcp-attempts": 4, "x-mcp-retries": 2,
                                      "x-death": [{"count": 2}]})
    state = state_of(envelope, "billing")

    key, properties = dead_letter(
        envelope, state, Home("billing", "billing.orders", "billing"),
        HandlerFailure(Reason.HANDLER_FAILED, "ValueError: boom", "Order", 6),
        Stamp(NOW, {"traceparent": "00-ef-01-01"}))

    assert key == "handler_failed.Order"
    assert properties.user_id is None
    assert dict(properties.headers) == {
        "traceparent": "00-ef-01-01",
        "x-mcp-reason": "handler_failed", "x-mcp-error": "ValueError: boom",
        "x-mcp-original-exchange": "", "x-mcp-original-routing-key": "billing.orders",
        "x-mcp-attempts": 6, "x-mcp-dead-lettered-at": "2026-11-24T12:00:00.000Z",
        "x-mcp-route": "order-created", "x-mcp-destination-exchange": "",
        "x-mcp-destination-routing-key": "billing.orders", "x-mcp-service": "billing",
        "x-mcp-publisher": "shop"}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_id_is_claimed_once_then_busy_then_done() -> None:
    """claim → busy for others → done is seen as done by every later claim."""
    store = InMemoryIdempotency()

    first = await store.claim("billing:m-1")
    busy = await store.claim("billing:m-1")
    assert isinstance(first, Claimed)
    await store.done(first)

    assert busy is Seen.BUSY
    assert await store.claim("billing:m-1") is Seen.DONE


async def test_a_released_claim_can_be_taken_again_but_only_by_its_holder() -> None:
    """release with another token changes nothing; with the holder's it frees the id."""
    store = InMemoryIdempotency()
    first = await store.claim("billing:m-1")
    assert isinstance(first, Claimed)

    await store.release(Claimed(first.key, "someone-else"))
    still_busy = await store.claim("billing:m-1")
    await store.release(first)

    assert still_busy is Seen.BUSY
    assert isinstance(await store.claim("billing:m-1"), Claimed)


async def test_claims_and_done_marks_expire_by_their_ttl() -> None:
    """A crashed holder's claim lapses after claim_ttl; a done mark after done_ttl."""
    clock = _Clock()
    store = InMemoryIdempotency(claim_ttl=10, done_ttl=100, clock=clock)
    crashed = await store.claim("a")
    handled = await store.claim("b")
    assert isinstance(crashed, Claimed)
    assert isinstance(handled, Claimed)
    await store.done(handled)

    clock.now = 11
    after_claim_ttl = (await store.claim("a"), await store.claim("b"))
    clock.now = 112

    assert isinstance(after_claim_ttl[0], Claimed)
    assert after_claim_ttl[1] is Seen.DONE
    assert isinstance(await store.claim("b"), Claimed)


async def test_the_in_memory_store_forgets_the_least_recently_used_ids_first() -> None:
    """At max_entries, the id touched longest ago goes."""
    store = InMemoryIdempotency(max_entries=2)
    for key in ("a", "b"):
        claim = await store.claim(key)
        assert isinstance(claim, Claimed)
        await store.done(claim)
    await store.claim("a")  # touched: "b" is now the oldest

    await store.claim("c")

    assert len(store) == 2
    assert await store.claim("a") is Seen.DONE
    assert isinstance(await store.claim("b"), Claimed)


def test_a_service_announces_what_its_handlers_take_and_parks_per_delay() -> None:
    """Registrations make the announcement and the retry queue names; one handler per type."""
    service = Service("billing", queue="billing.orders", retry=RetryPolicy(delays=(1.0, 0.5)))

    @service.handler("OrderCreated", versions=[2, 1])
    async def created(body: Any, ctx: Context) -> None:
        return None

    @service.handler("Refund", queue="billing.refunds", retry=RetryPolicy(delays=(60.0,)))
    async def refund(body: Any, ctx: Context) -> None:
        return None

    body = service.announcement().body()

    assert (body["queue"], body["queues"]) == \
        ("billing.orders", ["billing.orders", "billing.refunds"])
    assert body["handles"] == [{"type": "OrderCreated", "versions": [1, 2]},
                               {"type": "Refund", "versions": []}]
    assert service.retry_queues("billing.orders") == \
        ("billing.orders.retry.500ms", "billing.orders.retry.1000ms")
    assert service.retry_queues("billing.refunds") == (
        "billing.refunds.retry.500ms", "billing.refunds.retry.1000ms",
        "billing.refunds.retry.60000ms")
    with pytest.raises(ValueError, match="already has a handler"):
        service.handler("OrderCreated")(created)


def test_a_service_warns_about_routed_types_none_of_its_handlers_take(
        write_config: Any) -> None:
    """A route reaching the queue with an unhandled type is named; glob routes are not."""
    from router.config.configuration import load_config  # noqa: PLC0415

    root = write_config(
        topology={
            "exchanges": [{"name": "orders", "type": "topic"}],
            "queues": [{"name": "billing", "type": "quorum"}, {"name": "other"}],
            "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "order.*"},
                         {"exchange": "orders", "queue": "other", "routing_key": "x"}],
            "routes": [
                {"name": "created", "message_type": "Order", "to": [
                    {"exchange": "orders", "routing_key": "order.created"}]},
                {"name": "refunds", "message_type": "Refund", "to": [
                    {"exchange": "orders", "routing_key": "order.refund"}]},
                {"name": "elsewhere", "message_type": "Other", "to": [
                    {"exchange": "orders", "routing_key": "x"}]},
                {"name": "all", "message_type": "*", "to": [
                    {"exchange": "orders", "routing_key": "order.any"}]}]},
        schemas={f"{t}/v1.json": ORDER_SCHEMA for t in ("Order", "Refund", "Other")})
    service = Service.from_config("billing", load_config(root), queue="billing")
    service.handler("Order")(_ignore)

    assert service.warnings() == [
        "route 'refunds' sends Refund to billing, which has no handler for it: such messages "
        "are dead-lettered as unhandled"]


def test_a_delivery_whose_properties_cannot_be_sent_on_is_malformed(
        orders: SchemaRegistry) -> None:
    """A service dead-letters what it could not even park or dead-letter whole: malformed."""
    envelope = replace(_copy(), defects=("header 'x-big' cannot be sent on (OverflowError)",))

    decision = dispatch(envelope, _handlers(Registration("Order", _ignore)), orders, "billing")

    assert decision == Refuse(Reason.MALFORMED, "header 'x-big' cannot be sent on "
                              "(OverflowError)", "Order")
