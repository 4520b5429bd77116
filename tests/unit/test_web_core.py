"""The console's pure parts: auth, audit log, highlighting, graph, rates, selections."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.config.configuration import load_config
from router.observe.metrics import Metrics
from router.tools.letters import make_filter
from router.web.audit import MAX_LISTED, AuditEntry, AuditLog
from router.web.auth import Allowed, Credentials, Refused
from router.web.flow import Rate, Rates, Totals, chart, totals
from router.web.graph import route_graph
from router.web.highlight import marked_json, pointers
from router.web.selection import Selection, filter_of, letter_group, letter_key
from router.web.serve import ConsoleSettings
from tests.unit.test_letters import letter

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOST = {"host": "127.0.0.1:8080"}

# --- auth ------------------------------------------------------------------------------------


def test_signing_in_needs_the_token_and_names_the_operator() -> None:
    """A wrong token gives no session; the right one a cookie naming the operator."""
    creds = Credentials("s3cret")

    cookie = creds.sign_in("s3cret", " alice\x1b ")

    assert creds.sign_in("wrong", "alice") is None
    assert cookie is not None
    assert creds.operator(cookie) == "alice"
    assert Credentials("other").operator(cookie) is None  # a new token voids old sessions
    forged = base64.urlsafe_b64encode(b"mallory").decode().rstrip("=") + cookie[cookie.index("."):]
    assert creds.operator(forged) is None


def test_a_change_needs_session_and_csrf_or_a_bearer_token() -> None:
    """No credential 401; session without CSRF 403; with CSRF or the Bearer token allowed."""
    creds = Credentials("s3cret")
    cookie = creds.sign_in("s3cret", "alice")

    assert creds.check(HOST, None, None, "10.0.0.1") == Refused(401, "sign in with the console "
                                                                     "token first")
    assert isinstance(creds.check(HOST, cookie, "forged", "10.0.0.1"), Refused)
    assert creds.check(HOST, cookie, creds.csrf(cookie), "10.0.0.1") == Allowed("alice@10.0.0.1")
    assert creds.check({**HOST, "authorization": "Bearer s3cret"}, None, None, "h") == \
        Allowed("token@h")
    assert creds.check({**HOST, "authorization": "Bearer nope"}, None, None, "h") == \
        Refused(403, "wrong token")


def test_cross_origin_requests_and_consoles_without_a_token_change_nothing() -> None:
    """Another site's Origin is refused even with the token; no token disables changes."""
    creds = Credentials("s3cret")
    evil = {**HOST, "origin": "https://evil.example", "authorization": "Bearer s3cret"}

    assert creds.check(evil, None, None, "h") == Refused(403, "cross-origin request refused")
    assert isinstance(creds.check({**HOST, "origin": "http://127.0.0.1:8080",
                                   "authorization": "Bearer s3cret"}, None, None, "h"), Allowed)
    refused = Credentials(None).check({**HOST, "authorization": "Bearer x"}, None, None, "h")
    assert isinstance(refused, Refused)
    assert refused.status == 403
    assert "MCP_CONSOLE_TOKEN" in refused.why
    assert "s3cret" not in repr(creds)


# --- audit -----------------------------------------------------------------------------------


def test_the_audit_log_survives_a_restart_newest_first(tmp_path: Path) -> None:
    """Entries written by one AuditLog are read back, newest first, by a new one."""
    path = tmp_path / "state" / "audit.jsonl"
    AuditLog(path).record(AuditEntry.of(NOW, "alice@h", "replay", ["m-1", "m-2"]))
    AuditLog(path).record(AuditEntry.of(NOW, "bob@h", "purge", ["m-3"]))
    with path.open("a") as f:
        f.write("not json\n")

    entries = AuditLog(path).recent()

    assert [(e.who, e.action, e.count, e.letters) for e in entries] == [
        ("bob@h", "purge", 1, ("m-3",)), ("alice@h", "replay", 2, ("m-1", "m-2"))]
    assert entries[0].at == "2026-11-24T12:00:00.000Z"


def test_an_audit_entry_lists_at_most_a_thousand_ids_but_counts_all() -> None:
    """A bulk replay of 1500 letters records 1500 and lists the first 1000 ids."""
    entry = AuditEntry.of(NOW, "a", "replay", [f"m-{i}" for i in range(1500)])

    assert entry.count == 1500
    assert len(entry.letters) == MAX_LISTED
    assert AuditLog(Path("/nonexistent/audit.jsonl")).recent() == []


# --- highlighting ----------------------------------------------------------------------------


def test_the_pointers_an_error_names_are_marked_in_the_body() -> None:
    """/items/0/quantity and an escaped /a~1b are found; only their values are marked."""
    error = 'Order v2: /items/0/quantity: minimum: 0 is less; /a~1b: type: "x" is not'
    body = json.dumps({"items": [{"quantity": 0, "sku": "s"}], "a/b": "x", "ok": 1}).encode()

    pieces = marked_json(body, error)

    assert pointers(error) == {("items", "0", "quantity"), ("a/b",)}
    assert pieces is not None
    assert [text for text, marked in pieces if marked] == ['"quantity": 0', '"a/b": "x"']
    assert "".join(text for text, _ in pieces) == json.dumps(json.loads(body), indent=2)
    assert marked_json(b"\xff not json", error) is None


# --- graph -----------------------------------------------------------------------------------


def test_the_route_graph_holds_every_route_exchange_and_queue() -> None:
    """The example's routes, exchanges, queues and bindings all appear, in four columns."""
    topology = load_config(ROOT).topology

    graph = route_graph(topology)

    labels = {n.label for n in graph.nodes}
    assert {r.name for r in topology.routes} <= labels
    assert {e.name for e in topology.exchanges} <= labels
    assert {q.name for q in topology.queues} <= labels
    assert len({n.x for n in graph.nodes}) == 4
    bound = sum(1 for b in topology.all_bindings() if b.queue != topology.ingress.queue)
    destinations = sum(len(r.to) for r in topology.routes)
    assert len(graph.edges) == len(topology.routes) + destinations + bound + 1
    assert all(0 <= n.y < graph.height for n in graph.nodes)


# --- rates -----------------------------------------------------------------------------------


def test_rates_come_from_the_router_metrics() -> None:
    """Settled, routed and dead-lettered counts read from /metrics become rates per second."""
    metrics = Metrics()
    for _ in range(4):
        metrics.message("routed", "Order")
    metrics.message("dead_lettered", "Order")
    metrics.dead_letter("schema_invalid")
    rates = Rates()

    rates.add(10.0, Totals())
    rates.add(12.0, totals(metrics.render()))
    rates.add(13.0, Totals(1, 1, 0))  # the router restarted: counters began again

    assert totals(metrics.render()) == Totals(5, 4, 1)
    assert list(rates.samples) == [Rate(12.0, 2.5, 2.0, 0.5), Rate(13.0, 1.0, 1.0, 0.0)]


def test_the_chart_puts_now_at_the_right_edge() -> None:
    """The newest sample is at x = width; the top of the scale is a round number."""
    samples = [Rate(100.0, 0, 30, 3), Rate(250.0, 0, 70, 7), Rate(400.0, 0, 0, 0)]

    c = chart(samples, width=300, height=100, seconds=300)

    assert c.top == 100
    assert c.routed == "0.0,70.0 150.0,30.0 300.0,100.0"
    assert c.dead_lettered.endswith("300.0,100.0")
    assert chart([]).routed == ""


# --- selections ------------------------------------------------------------------------------


def test_letters_are_selected_by_key_group_or_filter() -> None:
    """A key names one letter; a group its reason, type and fingerprint; a filter the rest."""
    a = letter()
    b = letter(body=b'{"order_id": "y"}')
    other = letter(**{"x-mcp-reason": "unroutable", "x-mcp-error": "no route"})
    everything = make_filter(now=NOW)

    assert letter_key(a) != letter_key(b)
    assert letter_key(a) == letter_key(letter())
    assert Selection(everything, frozenset({letter_key(b)})).among([a, b, other]) == [b]
    assert Selection(everything, group=letter_group(a)).among([a, b, other]) == [a, b]
    assert Selection(make_filter(now=NOW, reason="unr*")).among([a, b, other]) == [other]


def test_filters_take_route_publisher_and_times_from_a_query() -> None:
    """route and publisher are globs; a bad time is a ValueError naming the formats."""
    flt, given = filter_of({"publisher": "sh*", "route": "", "since": "2h"}, NOW)
    routed = letter(**{"x-mcp-route": "order-created"})

    assert given == {"publisher": "sh*", "since": "2h"}
    assert flt.matches(letter())
    assert not filter_of({"publisher": "billing"}, NOW)[0].matches(letter())
    assert filter_of({"route": "order-*"}, NOW)[0].matches(routed)
    assert not filter_of({"route": "order-*"}, NOW)[0].matches(letter())
    with pytest.raises(ValueError, match="ISO 8601"):
        filter_of({"since": "yesterday"}, NOW)


# --- settings --------------------------------------------------------------------------------


def test_the_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    """MCP_CONSOLE_TOKEN wins; else MCP_CONSOLE_TOKEN_FILE, stripped (empty: no token); an
    unreadable file is an error."""
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")

    direct = ConsoleSettings.from_env({"MCP_CONSOLE_TOKEN": "direct", "HOME": "/home/op"})
    filed = ConsoleSettings.from_env({"MCP_CONSOLE_TOKEN_FILE": str(token_file),
                                      "MCP_JAEGER_URL": "http://jaeger:16686/",
                                      "MCP_CONSOLE_AUDIT_LOG": str(tmp_path / "a.jsonl")})

    assert direct.credentials.token == "direct"  # noqa: S105 -- a test value
    assert direct.audit_log == Path("/home/op/.local/state/mcp-router/audit.jsonl")
    assert filed.credentials.token == "from-file"  # noqa: S105 -- a test value
    assert filed.jaeger_url == "http://jaeger:16686"
    assert filed.audit_log == tmp_path / "a.jsonl"
    assert ConsoleSettings.from_env({}).credentials.writable is False
    with pytest.raises(ValueError, match="cannot read"):
        ConsoleSettings.from_env({"MCP_CONSOLE_TOKEN_FILE": str(tmp_path / "missing")})
    assert ConsoleSettings.from_env({"MCP_CONSOLE_TOKEN_FILE": str(empty)}).credentials.token \
        is None
