"""The hand-read ``traceparent`` and hand-written ``inject`` agree with the SDK's propagator.

``router.observe.tracing`` reads a plain W3C ``traceparent`` (version 00, text,
no ``tracestate``) itself and writes ``traceparent``/``tracestate`` itself; the
reference is ``TraceContextTextMapPropagator`` with the router's header getter,
what the router used before.  "The same" means a ``Context`` holding a span of
the same type whose span context is equal field by field, of the same types.
Property-based over well-formed, odd and mutated values of every wire type,
with and without a ``tracestate``.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router.core.envelope import Envelope, Properties
from router.observe import tracing

FAST = settings(max_examples=300, deadline=None, database=None)
_SDK = TraceContextTextMapPropagator()


def _sdk_extract(headers: Any) -> Context:
    try:
        return _SDK.extract(headers, getter=tracing._GETTER)
    except Exception:  # noqa: BLE001 -- as tracing.extract: a broken header, no context
        return Context()


def _described(context: Context) -> list[Any]:
    """A context's entries, spans by their type and every field of their span context."""
    entries: list[Any] = [type(context)]
    for key, value in context.items():
        if isinstance(value, trace.Span):
            ctx = value.get_span_context()
            entries.append((key, type(value), tuple(ctx), [type(field) for field in ctx],
                            list(ctx.trace_state.items())))
        else:
            entries.append((key, value))
    return entries


def _hex(size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(0, 16**size - 1).map(lambda n: format(n, f"0{size}x")),
        st.sampled_from(["0" * size, "f" * size, "0" * (size - 1) + "1"]),
        st.text("0123456789abcdefABCDEF", min_size=size, max_size=size))


_traceparents = st.builds(
    lambda lead, version, tid, sid, flags, tail: f"{lead}{version}-{tid}-{sid}-{flags}{tail}",
    st.sampled_from(["", "", "", " ", "\t"]),
    st.sampled_from(["00", "00", "00", "01", "cc", "ff", "0G", "AA", "0"]),
    _hex(32), _hex(16), _hex(2),
    st.sampled_from(["", "", "", "-", "-00", " ", "\t", "\n", "x", "-" + "a" * 500]))


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    """A well-formed traceparent with one character replaced, dropped or added."""
    value = draw(_traceparents.filter(lambda v: len(v) == 55))
    at = draw(st.integers(0, len(value)))
    char = draw(st.one_of(st.sampled_from(string.hexdigits + "-_ +x"), st.characters()))
    kind = draw(st.sampled_from(["replace", "drop", "add"]))
    if kind == "add":
        return value[:at] + char + value[at:]
    return value[:at] + (char if kind == "replace" else "") + value[at + 1:]


_plain = st.builds(  # well formed, the commonest by far; ids zero now and then
    lambda tid, sid, flags: f"00-{tid:032x}-{sid:016x}-{flags:02x}",
    st.one_of(st.integers(1, 2**128 - 1), st.just(0)),
    st.one_of(st.integers(1, 2**64 - 1), st.just(0)), st.integers(0, 255))
_texts = st.one_of(_plain, _traceparents, _mutated())
_VALUE_KINDS = {"plain": _plain, "text": _texts, "bytes": _texts.map(str.encode),
                "bytearray": _texts.map(lambda v: bytearray(v.encode())),
                "other": st.sampled_from([None, 7, 1.5, [], b"\xff"])}
_values = st.sampled_from(["plain"] * 4 + ["text"] * 3 + list(_VALUE_KINDS)).flatmap(
    _VALUE_KINDS.__getitem__)
_tracestates = st.one_of(st.sampled_from(["a=1", "a=1,b=2", "", "garbage", "a=1,a=2",
                                          "vendor@x=y", "A=1"]),
                         st.binary(max_size=8), st.integers())


@st.composite
def _headers(draw: st.DrawFn) -> dict[Any, Any]:
    headers: dict[Any, Any] = {}
    if draw(st.integers(0, 9)):
        headers["traceparent"] = draw(_values)
    if draw(st.integers(0, 3)) == 0:
        headers["tracestate"] = draw(_tracestates)
    if draw(st.booleans()):
        headers[draw(st.sampled_from(["x-bench-sent", "ce-traceparent", 1]))] = "x"
    return headers


@FAST
@given(headers=_headers())
def test_extract_gives_what_the_propagator_gives(headers: dict[Any, Any]) -> None:
    """Read by hand or by the propagator, the context is the propagator's."""
    assert _described(tracing.extract(headers)) == _described(_sdk_extract(headers))


@FAST
@given(headers=_headers())
def test_the_hand_reader_gives_the_propagators_context_or_declines(
        headers: dict[Any, Any]) -> None:
    """Either exactly the propagator's context, usable, or None (then the propagator reads)."""
    fast = tracing._traceparent(headers)
    if fast is not None:
        assert _described(fast) == _described(_sdk_extract(headers))
        assert trace.get_current_span(fast).get_span_context().is_valid


@FAST
@given(headers=_headers())
def test_parent_of_continues_the_amqp_traceparent_as_before(headers: dict[Any, Any]) -> None:
    """A usable AMQP ``traceparent`` is the parent, as the propagator reads it."""
    envelope = Envelope(body=b"{}", properties=Properties(headers=headers))
    sdk = _sdk_extract(headers)
    if trace.get_current_span(sdk).get_span_context().is_valid:
        assert _described(tracing.parent_of(envelope)) == _described(sdk)


def test_a_plain_traceparent_is_read_by_hand() -> None:
    """The bench's header: version 00, text, no tracestate."""
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               "x-bench-sent": 1}
    fast = tracing._traceparent(headers)
    assert fast is not None
    assert _described(fast) == _described(_sdk_extract(headers))


_span_contexts = st.builds(
    trace.SpanContext,
    st.one_of(st.integers(0, 2**128 - 1), st.sampled_from([0, 1, 2**128 - 1])),
    st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1])),
    st.booleans(), st.integers(0, 255).map(trace.TraceFlags),
    st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["a", "b", "v@x", "A"]),
                                            st.sampled_from(["1", "x y", ""])),
                                  max_size=3).map(trace.TraceState)))


@FAST
@given(ctx=_span_contexts)
def test_inject_writes_what_the_propagator_writes(ctx: trace.SpanContext) -> None:
    """Valid or not, with a tracestate or without: the same headers, in the same order."""
    span = trace.NonRecordingSpan(ctx)
    carrier: dict[str, str] = {}
    _SDK.inject(carrier, context=trace.set_span_in_context(span))
    assert list(tracing.inject(span).items()) == list(carrier.items())


def test_inject_of_a_propagating_span_is_the_propagators() -> None:
    """The router's own context-only span, as every copy's parent."""
    parent = tracing.extract({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-"
                                             "b7ad6b7169203331-01", "tracestate": "a=1"})
    span = tracing.PropagatingTracer().start_span("process", parent)
    carrier: dict[str, str] = {}
    _SDK.inject(carrier, context=trace.set_span_in_context(span))
    assert tracing.inject(span) == carrier
    assert carrier["tracestate"] == "a=1"
