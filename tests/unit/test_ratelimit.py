"""Token buckets and the rate_limits policy section (time injected, no sleeping)."""

from __future__ import annotations

import pytest

from router.config.rate_rules import RateRule, parse_rate
from router.core.ratelimit import TokenBuckets
from tests.unit.conftest import Check, WriteConfig


def _rule(per: str = "publisher", rate: float = 2.0, burst: float = 2.0) -> RateRule:
    return RateRule("Order*", rate, burst, per, "reject", 1.0, "policies/r.yaml:2")


def test_burst_then_refill_at_the_rate() -> None:
    """Two pass at once (burst 2), the third waits; half a second later one more passes."""
    buckets = TokenBuckets((_rule(),))

    results = [buckets.take("shop", "OrderCreated", 100.0) for _ in range(3)]
    later = buckets.take("shop", "OrderCreated", 100.5)

    assert results[:2] == [None, None]
    assert results[2] is not None
    assert later is None


@pytest.mark.parametrize(("per", "independent"), [("publisher", True), ("global", False)])
def test_buckets_per_publisher_or_shared(per: str, independent: bool) -> None:
    """Per publisher each publisher has its own bucket; global shares one."""
    buckets = TokenBuckets((_rule(per, burst=1.0),))

    buckets.take("shop", "OrderCreated", 0.0)
    other = buckets.take("checkout", "OrderCreated", 0.0)

    assert (other is None) == independent


def test_types_no_rule_matches_are_not_limited() -> None:
    """Only matching types draw tokens."""
    buckets = TokenBuckets((_rule(burst=1.0),))

    assert all(buckets.take("shop", "PaymentCaptured", 0.0) is None for _ in range(10))


@pytest.mark.parametrize(("text", "per_second"), [("50/s", 50.0), ("3000/m", 50.0),
                                                 ("36/h", 0.01), ("0/s", None), ("fast", None)])
def test_rates_are_parsed(text: str, per_second: float | None) -> None:
    """Rates are tokens per second, minute or hour."""
    assert parse_rate(text) == per_second


def test_rate_limit_rules_load_and_add_their_shaping_queue(write_config: WriteConfig) -> None:
    """A shaping rule's delay gets a retry queue like the retry ladder's."""
    from router.config.configuration import load_config  # noqa: PLC0415

    text = "rate_limits:\n  - match: 'Order*'\n    rate: 5/s\n    shape_delay: 250ms\n"
    config = load_config(write_config(policies={"r.yaml": text}))

    [rule] = config.policies.rate_limits
    assert (rule.rate, rule.burst, rule.per, rule.on_excess) == (5.0, 5.0, "publisher", "shape")
    assert any(q.name.endswith(".retry.250ms") for q in config.retry_queues())


def test_bad_rate_limit_rules_are_located(check: Check) -> None:
    """Bad rate, burst and mode are problems with their lines."""
    text = ("rate_limits:\n  - {match: '*', rate: fast}\n"
            "  - {match: '*', rate: 1/s, burst: 0, on_excess: drop}\n")

    problems = check(policies={"r.yaml": text})

    assert problems == [
        "policies/r.yaml:2: rate must be like 50/s, 3000/m or 10/h",
        "policies/r.yaml:3: burst must be at least 1",
        "policies/r.yaml:3: 'on_excess' must be one of shape, reject, got 'drop'",
    ]
