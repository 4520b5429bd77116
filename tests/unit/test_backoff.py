"""Reconnect backoff: doubles, caps, resets after a healthy session, jitters, rotates nodes."""

from __future__ import annotations

import pytest

from router.broker.amqp import broker_urls, redact
from router.core.backoff import Backoff, next_node


def test_failed_sessions_double_the_wait_up_to_the_maximum() -> None:
    """Sessions that never became ready wait 1, 2, 4, 8, then 15 s (no jitter)."""
    backoff = Backoff(initial=1.0, maximum=15.0, jitter=0.0)

    waits = [backoff.after_session(0.0, 0.5) for _ in range(6)]

    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_a_healthy_session_resets_the_ladder() -> None:
    """Five blips, each after healthy routing, cost the initial wait every time."""
    backoff = Backoff(initial=1.0, maximum=15.0, healthy_after=10.0, jitter=0.0)
    backoff.after_session(0.0, 0.0)
    backoff.after_session(0.0, 0.0)

    waits = [backoff.after_session(60.0, 0.0) for _ in range(5)]

    assert waits == [1.0] * 5


def test_a_short_healthy_spell_does_not_reset() -> None:
    """A session that routed for less than ``healthy_after`` keeps climbing the ladder."""
    backoff = Backoff(initial=1.0, maximum=15.0, healthy_after=10.0, jitter=0.0)

    waits = [backoff.after_session(2.0, 0.0) for _ in range(3)]

    assert waits == [1.0, 2.0, 4.0]


def test_jitter_spreads_replicas_over_a_range() -> None:
    """With jitter 0.5 a wait lies in [half, all] of the step; different chances differ."""
    waits = [Backoff(initial=4.0, jitter=0.5).after_session(0.0, chance)
             for chance in (0.0, 0.5, 0.999)]

    assert waits[0] == 4.0
    assert waits[1] == 3.0
    assert 2.0 < waits[2] < 2.01


def test_bad_settings_are_refused() -> None:
    """Jitter outside [0, 1] or a maximum below the initial wait is an error."""
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=5.0, maximum=1.0)


def test_next_node_starts_after_the_one_that_was_lost() -> None:
    """First the listed order; after losing node 1 of 3, try 2, 0, then 1 again."""
    assert next_node(3, None) == [0, 1, 2]
    assert next_node(3, 1) == [2, 0, 1]
    assert next_node(1, 0) == [0]


def test_broker_urls_take_repeats_and_commas() -> None:
    """Several --amqp-url, each possibly comma-separated, make one ordered list."""
    assert broker_urls("amqp://a/, amqp://b/") == ("amqp://a/", "amqp://b/")
    assert broker_urls(["amqp://a/", "amqp://b/,amqp://c/"]) == (
        "amqp://a/", "amqp://b/", "amqp://c/")
    assert broker_urls("") == ("amqp://guest:guest@localhost:5672/",)


def test_redact_hides_every_nodes_password() -> None:
    """A cluster's URL list is shown without any of its passwords."""
    shown = redact("amqp://u:secret@a:5672/,amqp://u:other@b:5672/")

    assert "secret" not in shown
    assert "other" not in shown
    assert shown.count("***") == 2
