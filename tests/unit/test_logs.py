"""Logs cannot be forged: values from messages never start a line of their own (CWE-117)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from router.observe.logs import JsonFormatter, TextFormatter, context

FORGED = "m-1\n2026-12-01 08:00:00,000 ERROR router.runtime.service: broker session ended"


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("router.settle", logging.INFO, __file__, 1, msg, args,
                               sys.exc_info() if exc else None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("hostile", [FORGED, "a\rb", "a\u2028b", "a\x85b", "\x1b[31mred"])
def test_a_hostile_value_in_the_message_stays_on_its_line(hostile: str) -> None:
    """Line breaks and control characters in a logged value are escaped."""
    line = TextFormatter().format(_record("dead-lettered (malformed): %s", hostile))

    assert len(line.splitlines()) == 1
    assert "\x1b" not in line
    assert line.endswith(repr(hostile)[1:-1])


def test_a_hostile_context_value_cannot_add_fields_or_lines() -> None:
    """A message id with spaces, brackets or newlines is quoted as one JSON string."""
    about = context(FORGED, "Order] [route=evil", trace_id="0af7")

    line = TextFormatter().format(_record("routed", **about))

    assert len(line.splitlines()) == 1
    assert f"message_id={json.dumps(FORGED)}" in line
    assert 'type="Order] [route=evil"' in line
    assert line.endswith(" trace_id=0af7]")


def test_a_traceback_is_indented_below_its_line() -> None:
    """An exception's text (it may quote input) is indented: no line passes as a log line."""
    try:
        raise ValueError(FORGED)
    except ValueError:
        line = TextFormatter().format(_record("failed", exc=True))

    first, *rest = line.split("\n")
    assert first.endswith("router.settle: failed")
    assert rest
    assert all(part.startswith("    ") for part in rest)


def test_json_log_stays_one_object_per_line() -> None:
    """The JSON format keeps hostile values as data on one line."""
    line = JsonFormatter().format(_record("dead-lettered: %s", FORGED,
                                          **context(FORGED, "\ud800")))

    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message_id"] == FORGED
    assert entry["message"] == f"dead-lettered: {FORGED}"
