"""Stage 3: which routes receive a message, by type and CEL ``when``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from router.config.route_table import RouteTable, compile_routes
from router.config.topology import Destination, RouteSpec
from router.core import route
from router.core.outcome import Copy, Decoded
from tests.unit.conftest import make_envelope


def spec(
    name: str,
    message_type: str = "Order",
    *,
    when: str | None = None,
    to: tuple[tuple[str, str | None], ...] = (("orders", "k"),),
) -> RouteSpec:
    """A route spec; ``to`` is (exchange, routing_key or None) pairs."""
    return RouteSpec(name, message_type, tuple(Destination(e, k) for e, k in to), when)


def router_of(*specs: RouteSpec) -> RouteTable:
    """Compile routes that are expected to be valid."""
    router, problems = compile_routes(specs, "topology.yaml")
    assert problems == []
    return router


def select(router: RouteTable, body: Any, message_type: str = "Order", **props: Any) -> list[Copy]:
    """The copies ``router`` makes of a message with ``body`` and ``props``."""
    message = Decoded(message_type, None, body)
    return list(route.select(router, message, make_envelope(body, type=message_type, **props)))


def test_two_matching_routes_fan_out_in_file_order() -> None:
    """Every matching route gets a copy, in the order the routes are written."""
    router = router_of(spec("second", to=(("b", "kb"),)), spec("first", to=(("a", "ka"),)))

    copies = select(router, {})

    assert copies == [Copy("second", "b", "kb"), Copy("first", "a", "ka")]


def test_route_with_two_destinations_makes_two_copies() -> None:
    """One route with two destinations produces one copy per destination."""
    router = router_of(spec("r", to=(("orders", "order.x"), ("payments", "pay.x"))))

    copies = select(router, {})

    assert copies == [Copy("r", "orders", "order.x"), Copy("r", "payments", "pay.x")]


def test_when_filters_routes() -> None:
    """A route with a ``when`` receives only messages for which it is true."""
    router = router_of(spec("all"), spec("big", when="message.total > 1000.0"))

    small = select(router, {"total": 10.0})
    big = select(router, {"total": 5000.0})

    assert [c.route for c in small] == ["all"]
    assert [c.route for c in big] == ["all", "big"]


@pytest.mark.parametrize(
    "body",
    [{}, {"total": "not a number"}, {"total": None}, [1, 2], "text"],
)
def test_when_that_errors_does_not_match(body: Any) -> None:
    """A ``when`` that errors at run time (missing field, wrong type) is no match, no raise."""
    router = router_of(spec("big", when="message.total > 1000.0"))

    copies = select(router, body)

    assert copies == []


def test_when_with_has_tests_optional_fields() -> None:
    """``has(message.field)`` lets a ``when`` test an optional field safely."""
    router = router_of(spec("r", when="has(message.email) && message.email.endsWith('@x.io')"))

    without = select(router, {})
    with_it = select(router, {"email": "a@x.io"})

    assert without == []
    assert [c.route for c in with_it] == ["r"]


@pytest.mark.parametrize(
    "when",
    [
        "true",
        "1 == 1",
        'message["a-b"] == 1 && message[\'c\'] == 2',
        "message . a == 1",
        "size(message) == 4",
        "message.items.exists(i, i.q > 1)",
        "message.items.exists(message, message.q > 1)",
        'message.a == 1 && "message" != ""',
        "has(message.a) && !has(message.zzz)",
        "message.items.map(i, i.q).exists(q, q == 2) && message.a == 1",
    ],
)
def test_when_sees_every_field_it_reads(when: str) -> None:
    """However a ``when`` reads the body (dot, brackets, whole, in macros) it sees the fields."""
    router = router_of(spec("r", when=when))
    body = {"a": 1, "a-b": 1, "c": 2, "items": [{"q": 2}]}

    copies = select(router, body)

    assert [c.route for c in copies] == ["r"]


def test_routes_reading_different_fields_each_see_theirs() -> None:
    """Two routes of one type reading different body fields both evaluate correctly."""
    router = router_of(
        spec("by-a", when="message.a == 1"),
        spec("by-b", when='message.b == "x"'),
        spec("by-header", when='headers.h == "y"'),
        spec("by-both", when='message.a == 1 && properties.user_id == "u"'),
    )

    copies = select(router, {"a": 1, "b": "x"}, headers={"h": "y"}, user_id="u")

    assert [c.route for c in copies] == ["by-a", "by-b", "by-header", "by-both"]


def test_non_boolean_when_does_not_match() -> None:
    """A ``when`` that yields a non-bool (here an int) does not match."""
    router = router_of(spec("r", when="message.total"))

    copies = select(router, {"total": 1})

    assert copies == []


def test_star_matches_every_type() -> None:
    """``message_type: "*"`` receives every message type."""
    router = router_of(spec("audit", "*"))

    types = [select(router, {}, t)[0].route for t in ("Order", "Payment", "x.y")]

    assert types == ["audit", "audit", "audit"]


def test_glob_and_exact_types() -> None:
    """``Order*`` matches OrderCreated but not PaymentCaptured; exact names match only."""
    router = router_of(spec("orders", "Order*"), spec("created", "OrderCreated"))

    created = select(router, {}, "OrderCreated")
    updated = select(router, {}, "OrderUpdated")
    payment = select(router, {}, "PaymentCaptured")

    assert [c.route for c in created] == ["orders", "created"]
    assert [c.route for c in updated] == ["orders"]
    assert payment == []


def test_routing_key_defaults_to_the_message_type() -> None:
    """A destination without routing_key uses the message type as the routing key."""
    router = router_of(spec("r", "Order*", to=(("orders", None),)))

    created = select(router, {}, "OrderCreated")
    updated = select(router, {}, "OrderUpdated")

    assert created == [Copy("r", "orders", "OrderCreated")]
    assert updated == [Copy("r", "orders", "OrderUpdated")]


def test_empty_routing_key_is_kept() -> None:
    """An explicit empty routing key (fanout) is not replaced by the type."""
    router = router_of(spec("r", to=(("audit", ""),)))

    copies = select(router, {})

    assert copies == [Copy("r", "audit", "")]


def test_cel_sees_bytes_headers_as_text() -> None:
    """A header sent as bytes (or bytearray) is a string in ``headers``."""
    router = router_of(spec("acme", when='headers["x-tenant"] == "acme"'))

    from_bytes = select(router, {}, headers={"x-tenant": b"acme"})
    from_bytearray = select(router, {}, headers={"x-tenant": bytearray(b"acme")})
    other = select(router, {}, headers={"x-tenant": b"other"})

    assert [c.route for c in from_bytes] == ["acme"]
    assert [c.route for c in from_bytearray] == ["acme"]
    assert other == []


def test_cel_sees_nested_headers_and_numbers() -> None:
    """Nested header tables and numbers reach CEL as maps and numbers."""
    router = router_of(spec("r", when='headers.meta.region == "eu" && headers.retries < 3'))

    copies = select(router, {}, headers={"meta": {"region": b"eu"}, "retries": 1})

    assert [c.route for c in copies] == ["r"]


@pytest.mark.parametrize(
    ("header", "when"),
    [
        (Decimal("1.5"), "headers.h > 1.0"),
        ([1, b"x", None], 'size(headers.h) == 3 && headers.h[1] == "x"'),
        (b"\xff", 'headers.h == b"\\xff"'),
        (datetime(2024, 1, 1, tzinfo=UTC), "headers.h.getFullYear() == 2024"),
        (None, "headers.h == null"),
        (2**40, "headers.h > 1"),
    ],
)
def test_cel_sees_every_amqp_header_type(header: Any, when: str) -> None:
    """Decimals, arrays, non-UTF-8 bytes, timestamps, voids and longs all reach CEL."""
    router = router_of(spec("r", when=when))

    copies = select(router, {}, headers={"h": header, "other": Decimal("2")})

    assert [c.route for c in copies] == ["r"]


def test_cel_sees_properties() -> None:
    """``properties.user_id`` and friends are visible to ``when``."""
    router = router_of(spec("alice", when='properties.user_id == "alice"'))

    alice = select(router, {}, user_id="alice")
    bob = select(router, {}, user_id="bob")
    anonymous = select(router, {})

    assert [c.route for c in alice] == ["alice"]
    assert bob == []
    assert anonymous == []


def test_cel_sees_type_routing_key_and_timestamp() -> None:
    """``properties`` includes type, routing_key, priority and a timestamp."""
    when = ('properties.type == "Order" && properties.routing_key == "rk" '
            '&& properties.priority == 5 && properties.timestamp.getFullYear() == 2024')
    router = router_of(spec("r", when=when))

    copies = select(router, {}, routing_key="rk", priority=5,
                    timestamp=datetime(2024, 5, 1, tzinfo=UTC))

    assert [c.route for c in copies] == ["r"]


def test_message_without_candidates_has_no_copies() -> None:
    """A type no route names gets no copies (the pipeline makes that unroutable)."""
    router = router_of(spec("r", "Order"))

    copies = select(router, {}, "Payment")

    assert copies == []


def test_compile_reports_each_bad_route_and_keeps_the_good() -> None:
    """A bad ``when`` is a problem located at the route; valid routes still compile."""
    specs = (
        RouteSpec("ok", "*", (Destination("a"),)),
        RouteSpec("bad", "*", (Destination("a"),), "message.x >", line=7),
    )

    router, problems = compile_routes(specs, "topology.yaml")

    assert [r.spec.name for r in router.routes] == ["ok"]
    assert len(problems) == 1
    assert str(problems[0]).startswith("topology.yaml:7: route 'bad': CEL syntax error: ")
