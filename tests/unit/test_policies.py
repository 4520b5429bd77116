"""``policies/*.yaml``: retry rules, durations and their limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from router.config.policies import DEFAULT_RETRY, RetryPolicy, load_policies, parse_duration
from tests.unit.conftest import Check, WriteConfig

RULES = """\
retry:
  - match: "Payment*"
    attempts: 5
    backoff: {initial: 10ms, multiplier: 3, max: 1s}
  - match: "*"
    attempts: 2
"""


def test_first_matching_rule_wins(write_config: WriteConfig) -> None:
    """Rules are tried in order; the first glob that matches the type applies."""
    root = write_config(policies={"retry.yaml": RULES})

    policies, problems = load_policies(root / "policies")

    assert problems == []
    assert policies.retry_for("PaymentCaptured") == RetryPolicy(5, 0.01, 3.0, 1.0)
    assert policies.retry_for("OrderCreated").attempts == 2


def test_files_apply_in_name_order(write_config: WriteConfig) -> None:
    """Rules of ``a.yaml`` come before those of ``b.yaml``."""
    root = write_config(policies={
        "b.yaml": "retry:\n  - {match: '*', attempts: 2}\n",
        "a.yaml": "retry:\n  - {match: 'Order*', attempts: 4}\n",
    })

    policies, _ = load_policies(root / "policies")

    assert policies.retry_for("OrderCreated").attempts == 4
    assert policies.retry_for("Other").attempts == 2


def test_unmatched_type_gets_the_default(write_config: WriteConfig) -> None:
    """A type no rule matches gets ``DEFAULT_RETRY``."""
    root = write_config(policies={"retry.yaml": "retry:\n  - {match: 'Payment*'}\n"})

    policies, _ = load_policies(root / "policies")

    assert policies.retry_for("OrderCreated") == DEFAULT_RETRY


def test_no_policies_directory_means_defaults(tmp_path: Path) -> None:
    """Without policies/ there are no rules and no problems; every type gets the default."""
    policies, problems = load_policies(tmp_path / "policies")

    assert problems == []
    assert policies.retry == ()
    assert policies.retry_for("Anything") == DEFAULT_RETRY


def test_default_retry_is_short() -> None:
    """The default is 3 attempts with 50 ms then 100 ms between them."""
    assert DEFAULT_RETRY.backoff_delays() == [0.05, 0.1]


def test_delays_are_capped_by_max() -> None:
    """Backoff grows by the multiplier and never exceeds ``max``."""
    policy = RetryPolicy(attempts=5, initial=0.1, multiplier=3, max=0.5)

    assert policy.backoff_delays() == pytest.approx([0.1, 0.3, 0.5, 0.5])


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("50ms", 0.05), ("2s", 2.0), ("1m", 60.0), ("1.5m", 90.0), (" 2 s ", 2.0),
     ("3", 3.0), (3, 3.0), (0.25, 0.25), (0, 0.0)],
)
def test_durations_are_parsed(value: Any, seconds: float) -> None:
    """Durations accept ms, s, m suffixes and bare numbers of seconds."""
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["-1s", -1, True, None, "", "soon", [1]])
def test_bad_durations_are_refused(value: Any) -> None:
    """Anything else (hours, negatives, booleans, words) is not a duration."""
    assert parse_duration(value) is None


def test_bad_duration_is_reported_with_its_line(check: Check) -> None:
    """A backoff value that is not a duration is a located problem."""
    text = "retry:\n  - match: '*'\n    backoff:\n      initial: soon\n"

    problems = check(policies={"retry.yaml": text})

    assert problems == ["policies/retry.yaml:4: 'initial' must be a duration such as "
                        "50ms, 2s or 1m"]


def test_long_in_process_wait_is_refused(check: Check) -> None:
    """Retries whose sleeps add up to more than 10 s are refused (the delivery stays unacked)."""
    text = "retry:\n  - match: '*'\n    attempts: 12\n    backoff: {initial: 1s, max: 1s}\n"

    problems = check(policies={"retry.yaml": text})

    assert len(problems) == 1
    assert problems[0].startswith("policies/retry.yaml:2: in-process retries would wait 11.0s")


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("{match: '*', attempts: 0}", "attempts must be between 1 and 20"),
        ("{match: '*', backoff: {multiplier: 0.5}}", "multiplier must be at least 1"),
        ("{match: '*', tries: 3}", "unknown key 'tries' in retry rule"),
        ("{attempts: 3}", "missing required key 'match'"),
        ("{match: '*', attempts: 'three'}", "'attempts' must be an integer, got str"),
    ],
)
def test_rule_mistakes_are_reported(check: Check, rule: str, expected: str) -> None:
    """Each mistake in a retry rule is one located problem."""
    problems = check(policies={"retry.yaml": f"retry:\n  - {rule}\n"})

    assert len(problems) == 1
    assert problems[0].startswith("policies/retry.yaml:2: " + expected)


def test_unknown_policy_section_is_reported(check: Check) -> None:
    """A section other than ``retry`` is reported (nothing is silently ignored)."""
    problems = check(policies={"limits.yaml": "rate_limit: {}\n"})

    assert len(problems) == 1
    assert problems[0].startswith("policies/limits.yaml:1: unknown key 'rate_limit'")


def test_non_yaml_files_are_ignored(write_config: WriteConfig) -> None:
    """Only ``*.yaml``/``*.yml`` in policies/ are read."""
    root = write_config(policies={"README.md": "# notes", "r.yml": "retry: []\n"})

    policies, problems = load_policies(root / "policies")

    assert problems == []
    assert policies.retry == ()


def test_huge_attempt_count_is_a_problem_not_a_crash(check: Check) -> None:
    """``attempts: 2000`` is reported as a problem instead of raising OverflowError."""
    text = "retry:\n  - match: '*'\n    attempts: 2000\n"

    problems = check(policies={"retry.yaml": text})

    assert len(problems) == 1
    assert problems[0].startswith("policies/retry.yaml:")


def test_broker_delays_are_read_per_rule(write_config: WriteConfig) -> None:
    """``delays`` sets the broker tier of a rule; without it the default ladder applies."""
    text = "retry:\n  - match: 'Pay*'\n    delays: [500ms, 2s, 1h]\n  - match: '*'\n"
    root = write_config(policies={"retry.yaml": text})

    policies, problems = load_policies(root / "policies")

    assert problems == []
    assert policies.retry_for("PaymentCaptured").delays == (0.5, 2.0, 3600.0)
    assert policies.retry_for("Other").delays == DEFAULT_RETRY.delays


def test_no_broker_delays_is_allowed(write_config: WriteConfig) -> None:
    """``delays: []`` dead-letters as soon as the in-process attempts fail."""
    root = write_config(policies={"retry.yaml": "retry:\n  - match: '*'\n    delays: []\n"})

    policies, _ = load_policies(root / "policies")

    assert policies.retry_for("T").delays == ()


def test_every_delay_in_use_gets_a_retry_queue(write_config: WriteConfig) -> None:
    """The broker delays of all rules and of the default, once each, ascending."""
    text = "retry:\n  - match: 'A'\n    delays: [10s, 50ms]\n  - match: 'B'\n    delays: [1s]\n"
    root = write_config(policies={"retry.yaml": text})

    policies, _ = load_policies(root / "policies")

    assert policies.broker_delays() == (0.05, 1.0, 10.0, 60.0)


@pytest.mark.parametrize("bad", ["0ms", "8d", "soon", "-1s"])
def test_bad_broker_delay_is_reported_at_its_line(check: Check, bad: str) -> None:
    """A delay outside 1 ms to 7 days, or not a duration, is a located problem."""
    text = f"retry:\n  - match: '*'\n    delays:\n      - 1s\n      - {bad}\n"

    problems = check(policies={"retry.yaml": text})

    assert problems == ["policies/retry.yaml:5: each delay must be a duration from 1ms to 7d, "
                        "such as 500ms, 10s or 5m"]
