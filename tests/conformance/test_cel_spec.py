"""The cel-spec conformance tests the routes' expressions depend on, against the router's CEL.

Each test of the vendored ``tests/simple/testdata`` files (comparisons across
int, uint and double; ``has()`` and field selection on maps; string
functions; timestamps and durations; logic with errors) is compiled and run
as ``router.core.route`` runs a ``when``: ``cel.compile`` of the
``common-expression-language`` package, then ``execute`` with the bindings
as the context.  The result is compared by type and value (a CEL ``uint``
and ``int`` both come back as a Python ``int``, a type as its name); an
expected evaluation error must raise.

Tests about protobuf messages (``TestAllTypes``, a proto ``container``,
message-typed bindings, wrapper construction) do not apply: a route sees a
JSON body, headers and properties, never a protobuf message; nor do bindings
with qualified names (``a.b.c``).  They are counted as skipped, not run.  What
differs from the specification is listed in DEVIATIONS, run as strict xfail.
Vendored in tests/data/cel-spec (see its README).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cel
import pytest

from tests.conformance.textproto import Message, Name, parse

SUITE = "cel-spec conformance (simple tests)"
DATA = Path(__file__).parents[1] / "data" / "cel-spec" / "tests" / "simple" / "testdata"
FILES = ["comparisons", "fields", "logic", "string", "timestamps"]
_PROTO = re.compile(r"TestAllTypes|cel\.expr\.conformance|google\.protobuf\.\w+\s*\{")


class NotApplicable(Exception):
    """A test about what route expressions never see: protobuf messages, dotted names."""


_KEYS = ("map keys of different numeric types (1, 1u, 1.0) are not the same key: a lookup "
         "or `in` with another numeric type misses or fails; JSON object keys are strings, "
         "so a body never has such a map")
_SIZE = ("size() of a string counts UTF-8 bytes, not code points: size('ÿ') is 2; the same "
         "for ASCII text, larger for any other")
_QUOTED = ("backquoted field names (m.`content-type`) are a syntax error, reported by check: "
           "write message[\"content-type\"]")
_TZ = ("the timestamp getters take no time zone argument (getHours(\"America/Los_Angeles\") "
       "is an error, so the route does not match): they read UTC")
_RANGE = ("timestamps and durations past the CEL range (years 1 to 9999, about ±10,000 years) "
          "are not an error")
_STRING = "string() of a timestamp or duration is not the RFC 3339 / seconds text CEL specifies"
_TYPE_NAME = "google.protobuf.Timestamp and google.protobuf.Duration are no type identifiers"

#: "file/section/test" -> how the router's CEL differs from the specification there.
DEVIATIONS: dict[str, str] = {
    "comparisons/eq_literal/eq_map_mixed_type_numbers": _KEYS,
    "fields/map_fields/map_key_mixed_numbers_double_key": _KEYS,
    "fields/map_fields/map_key_mixed_numbers_uint_key": _KEYS,
    "fields/map_fields/map_key_mixed_numbers_int_key": _KEYS,
    "fields/in/mixed_numbers_and_keys_present": _KEYS,
    "fields/in/mixed_numbers_and_keys_absent": _KEYS,
    "comparisons/eq_literal/not_eq_dyn_timestamp_null": "timestamp(int) (seconds since the "
                                                        "epoch) is not supported: an error",
    **{f"fields/quoted_map_fields/{name}": _QUOTED for name in (
        "field_access_slash", "field_access_dash", "field_access_dot", "has_field_slash",
        "has_field_dash", "has_field_dot")},
    "fields/qualified_identifier_resolution/map_value_repeat_key":
        "a map literal with a repeated key is no error: the last value wins (a JSON body "
        "with a repeated key is refused by decode)",
    "string/size/one_unicode": _SIZE,
    "string/size/unicode": _SIZE,
    "timestamps/timestamp_conversions/toInt_timestamp": "int(timestamp) is not supported: an "
                                                        "error",
    "timestamps/timestamp_conversions/toString_timestamp": _STRING,
    "timestamps/timestamp_conversions/toString_timestamp_nanos": _STRING,
    "timestamps/duration_conversions/toString_duration": _STRING,
    "timestamps/timestamp_conversions/type_comparison": _TYPE_NAME,
    "timestamps/duration_conversions/type_comparison": _TYPE_NAME,
    **{f"timestamps/timestamp_selectors_tz/{name}": _TZ for name in (
        "getDate", "getDayOfMonth_name_pos", "getDayOfMonth_numerical_pos",
        "getDayOfMonth_numerical_neg", "getDayOfMonth_name_neg", "getDayOfWeek",
        "getDayOfYear", "getFullYear", "getHours", "getMinutes", "getMonth", "getSeconds")},
    "timestamps/timestamp_arithmetic/add_time_to_duration":
        "duration + timestamp is an error; timestamp + duration works",
    **{f"timestamps/{name}": _RANGE for name in (
        "timestamp_range/sub_time_duration_over", "timestamp_range/sub_time_duration_under",
        "duration_range/from_string_under", "duration_range/from_string_over",
        "duration_range/add_under", "duration_range/add_over", "duration_range/sub_under",
        "duration_range/sub_over")},
}


def _value(value: Message) -> Any:
    """A cel.expr.Value as the Python value the package gives for it."""
    (kind, (item,)), = value.items()
    if kind in ("int64_value", "uint64_value"):
        return int(item)
    if kind == "double_value":
        return float(str(item).replace("infinity", "inf")) if isinstance(item, Name) \
            else float(item)
    if kind == "string_value":
        return item if isinstance(item, str) else item.decode("utf-8")
    if kind == "bytes_value":
        return item.encode() if isinstance(item, str) else item
    if kind == "bool_value":
        return item == "true"
    if kind == "null_value":
        return None
    if kind == "list_value":
        return [_value(v) for v in item.get("values", [])]
    if kind == "map_value":
        return {_value(e["key"][0]): _value(e["value"][0]) for e in item.get("entries", [])}
    if kind == "type_value":
        return _Type(item)
    if kind == "object_value":
        return _object(item)
    raise NotApplicable(kind)


class _Type(str):
    """An expected CEL type value: the package returns a type as its name."""

    __slots__ = ()


def _object(item: Message) -> Any:
    (kind, (fields,)), = item.items()
    seconds, nanos = fields.get("seconds", [0])[0], fields.get("nanos", [0])[0]
    if kind == "[type.googleapis.com/google.protobuf.Timestamp]":
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)
    if kind == "[type.googleapis.com/google.protobuf.Duration]":
        return timedelta(seconds=seconds, microseconds=nanos // 1000)
    raise NotApplicable(kind)


def _normal(value: Any) -> Any:
    """``value`` with its CEL type made explicit, so that 1, 1.0 and True differ."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, _Type):
        return ("type", str(value))
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("double", "nan" if math.isnan(value) else value)
    if isinstance(value, list):
        return ("list", tuple(_normal(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((_normal(k), _normal(v)) for k, v in value.items()))
    if isinstance(value, datetime):
        return ("timestamp", value.astimezone(UTC))
    return (type(value).__name__, value)


def _cases() -> list[Any]:
    cases = []
    for file in FILES:
        suite = parse((DATA / f"{file}.textproto").read_text())
        for section in suite.get("section", []):
            for test in section.get("test", []):
                name = f"{file}/{section['name'][0]}/{test['name'][0]}"
                why = DEVIATIONS.get(name)
                marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
                cases.append(pytest.param(test, id=name, marks=marks))
    return cases


def _applicable(test: Message) -> dict[str, Any]:
    """The test's bindings as a context; NotApplicable when it is about protobuf messages."""
    text = test["expr"][0]
    container = test.get("container", [""])[0]
    if _PROTO.search(text) or container \
            or "message_type" in repr(test.get("type_env", [])):
        raise NotApplicable("protobuf messages")
    bindings = {b["key"][0]: _value(b["value"][0]["value"][0]) for b in test.get("bindings", [])}
    if any("." in name for name in bindings):
        raise NotApplicable("qualified variable names (a route binds message, headers and "
                            "properties only)")
    return bindings


@pytest.mark.conformance(SUITE)
@pytest.mark.parametrize("test", _cases())
def test_cel_spec_case(test: Message) -> None:
    """The router's CEL gives the result (or the error) the specification gives."""
    try:
        variables = _applicable(test)
        expected = _value(test["value"][0]) if "value" in test else None
    except NotApplicable as exc:
        pytest.skip(f"not applicable to routes: {exc}")
    program = cel.compile(test["expr"][0]) if "eval_error" not in test else None
    if program is None:
        with pytest.raises(Exception):  # noqa: B017, PT011 -- any error: CEL errors are not typed
            cel.compile(test["expr"][0]).execute(cel.Context(variables))
        return
    result = program.execute(cel.Context(variables))
    if isinstance(expected, _Type) and isinstance(result, str):
        result = _Type(result)  # the package gives a type value as its name

    assert _normal(result) == _normal(expected)


def test_the_vendored_files_are_complete() -> None:
    """Every file named is vendored, each with its tests, and every deviation names a test."""
    names = {p.id for p in _cases()}

    assert all((DATA / f"{file}.textproto").is_file() for file in FILES)
    assert len(names) > 500
    assert set(DEVIATIONS) <= names
