"""Hypothesis strategies for the router's message properties, every value the router passes on.

Every property present or absent, short strings at their limits, and header
values of every kind: integers and floats at their edges, decimals, datetimes
naive and aware, bytes, tables and arrays nested in one another.  Shared by
the tests of the hand encoder (``router.broker.propwire``) and the hand
decoder (``router.broker.propread``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from router.core.envelope import Properties

__all__ = ["header_values", "headers", "properties"]

_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
_short = st.one_of(st.none(), st.just(""), _text, st.sampled_from(
    ["application/json", "заказ", "🐇" * 63, "x" * 255]))
_INT_EDGES = [0, -1, 127, 128, -128, -129, 255, 256, 32767, 32768, -32768, -32769, 65535,
              65536, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 - 1, 2**32, 2**63 - 1,
              -(2**63)]
_ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from(_INT_EDGES))
_FLOAT_EDGES = [0.0, -0.0, 0.5, 0.1, 1 / 3, 1e300, -1e300, 1e-300, 5e-324, 3.4028234663852886e38,
                3.5e38, 16777217.0, math.inf, -math.inf, math.nan]
_floats = st.one_of(st.floats(), st.floats(width=32), st.sampled_from(_FLOAT_EDGES))
_decimals = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)).map(
        lambda t: Decimal(t[1]).scaleb(-t[0])),
    st.sampled_from([Decimal("1E+3"), Decimal("-0.00"), Decimal("12.50"), Decimal(2**31 - 1)]))
_UTC_DATES = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1))
_datetimes = st.one_of(_UTC_DATES, _UTC_DATES.map(lambda d: d.replace(tzinfo=UTC)),
                       _UTC_DATES.map(lambda d: d.replace(tzinfo=timezone(timedelta(hours=5)))))
_scalars = st.one_of(_text, _ints, st.booleans(), _floats, _decimals, _datetimes, st.none(),
                     st.binary(max_size=20), st.binary(max_size=20).map(bytearray))
_keys = st.one_of(_text, st.sampled_from(["x-mcp-attempts", "traceparent", "x-death", "k" * 128,
                                          "é" * 64]))
header_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.dictionaries(_keys, inner, max_size=4), st.lists(inner, max_size=4),
    st.lists(inner, max_size=3).map(tuple)), max_leaves=12)
headers = st.dictionaries(_keys, header_values, max_size=6)


@st.composite
def properties(draw: st.DrawFn) -> Properties:
    """Router properties, any present or absent."""
    return Properties(
        content_type=draw(_short), content_encoding=draw(_short), headers=draw(headers),
        delivery_mode=draw(st.sampled_from([None, 1, 2])),
        priority=draw(st.one_of(st.none(), st.integers(0, 255))),
        correlation_id=draw(_short), reply_to=draw(_short), expiration=draw(_short),
        message_id=draw(_short),
        timestamp=draw(st.one_of(st.none(), _datetimes)),
        type=draw(_short), user_id=draw(_short), app_id=draw(_short))
