"""Retry decisions and the router's own retry headers (pure)."""

from __future__ import annotations

import pytest

from router.config.configuration import Config
from router.config.policies import RetryPolicy
from router.config.retry_policy import retry_queue_name
from router.core.envelope import Envelope
from router.core.ladder import (
    GiveUp,
    RetryLater,
    RetryState,
    next_step,
    restore,
    retry_headers,
    retry_state_of,
)
from router.core.outcome import Copy, DeadCopy, Forward, Reason
from router.core.pipeline import decide, original
from router.errors import TransientFailure, Unroutable
from tests.unit.conftest import make_envelope
from tests.unit.test_pipeline import GOOD, shop  # noqa: F401 -- the fixture is reused

POLICY = RetryPolicy(attempts=2, delays=(0.5, 5.0))
STATE = RetryState(route="order", exchange="orders", routing_key="order.created", attempts=4,
                   retries=1, last_error="NO_ROUTE", original_exchange="mcp.ingress",
                   original_routing_key="Order", publisher="svc")


def _parked(user_id: str | None = "router", **extra: object) -> Envelope:
    headers = {**retry_headers(STATE), "x-death": [{"reason": "expired"}],
               "x-first-death-queue": "q", "x-delivery-count": 0, "x-tenant": "acme", **extra}
    return make_envelope(GOOD, exchange="", routing_key="mcp.router.ingress", type="Order",
                         message_id="m-1", user_id=user_id, headers=headers)


@pytest.mark.parametrize(("done", "expected"), [(0, RetryLater(0.5)), (1, RetryLater(5.0))])
def test_rounds_follow_the_policy_delays(done: int, expected: RetryLater) -> None:
    """Each broker round waits the next delay of the policy."""
    assert next_step(POLICY, done, TransientFailure("nack")) == expected


def test_after_the_last_round_a_transient_failure_is_retries_exhausted() -> None:
    """No delays left and the broker still refuses: retries_exhausted."""
    assert next_step(POLICY, 2, TransientFailure("nack")) == GiveUp(Reason.RETRIES_EXHAUSTED)


def test_after_the_last_round_a_return_is_unroutable() -> None:
    """No delays left and the destination still has no queue: unroutable."""
    assert next_step(POLICY, 2, Unroutable("NO_ROUTE")) == GiveUp(Reason.UNROUTABLE)


def test_no_delays_means_dead_letter_after_the_in_process_tier() -> None:
    """A policy with ``delays: []`` gives up as soon as the quick attempts fail."""
    assert next_step(RetryPolicy(delays=()), 0, Unroutable("x")) == GiveUp(Reason.UNROUTABLE)


def test_retry_queue_names_carry_the_delay_in_milliseconds() -> None:
    """One queue per delay, named after the ingress queue and the delay."""
    assert retry_queue_name("mcp.router.ingress", 0.05) == "mcp.router.ingress.retry.50ms"
    assert retry_queue_name("q", 60.0) == "q.retry.60000ms"


def test_retry_state_round_trips_through_headers() -> None:
    """The router reads back exactly the state it wrote, when the user is its own."""
    assert retry_state_of(_parked(), "router") == STATE


@pytest.mark.parametrize("user_id", [None, "svc", "Router"])
def test_retry_headers_from_anyone_else_are_ignored(user_id: str | None) -> None:
    """Without the router's validated user_id, x-mcp-* retry headers mean nothing."""
    assert retry_state_of(_parked(user_id), "router") is None


@pytest.mark.parametrize("bad", [{"x-mcp-attempts": "4"}, {"x-mcp-retries": -1},
                                 {"x-mcp-retry-route": 7}, {"x-mcp-attempts": True}])
def test_malformed_retry_headers_are_not_a_retry(bad: dict[str, object]) -> None:
    """Headers of the wrong type make the message an ordinary one, not a crash."""
    assert retry_state_of(_parked(**bad), "router") is None


def test_restore_gives_back_the_message_as_first_published() -> None:
    """Retry and broker headers go, the origin and the publisher come back."""
    restored = restore(_parked(), STATE)

    assert (restored.exchange, restored.routing_key) == ("mcp.ingress", "Order")
    assert restored.properties.user_id == "svc"
    assert restored.properties.headers == {"x-tenant": "acme"}


def test_a_returning_copy_is_forwarded_alone_with_its_state(shop: Config) -> None:  # noqa: F811
    """Only the copy that failed goes out again, carrying its attempts so far."""
    envelope, state = original(_parked(), "router")

    outcome = decide(envelope, shop, state)

    assert outcome == Forward(outcome.message, (Copy("order", "orders", "order.created"),),
                              STATE)


def test_a_returning_copy_whose_route_changed_is_dead_lettered(shop: Config) -> None:  # noqa: F811
    """If the configuration no longer sends the copy there, it is unroutable, with why."""
    moved = RetryState("order", "orders", "order.old", 4, 1, "x", "mcp.ingress", "Order", "svc")
    envelope = restore(_parked(), moved)

    outcome = decide(envelope, shop, moved)

    assert isinstance(outcome, DeadCopy)
    assert outcome.reason is Reason.UNROUTABLE
    assert "no longer sends" in outcome.error
    assert outcome.route == "order"
