"""The HTTP layer without a broker: ops endpoints, reload's token, refusals, assets, escaping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from router.config.configuration import load_config
from router.errors import BrokerUnavailable
from router.web.app import make_app
from router.web.audit import AuditLog
from router.web.auth import Credentials
from router.web.broker import ConsoleBroker
from router.web.pages import letter_facts
from router.web.providers import Console, Ops
from router.web.render import _ENV
from tests.unit.test_letters import letter

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken"  # noqa: S105 -- a test credential
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"  # never connected to by these tests


def journal(message_id: str) -> Mapping[str, Any] | None:
    return {"message_id": message_id, "events": [{"at": "t", "event": "routed"}]} \
        if message_id == "m-1" else None


def _ops(reloads: list[int]) -> Ops:
    async def reload() -> tuple[bool, dict[str, object]]:
        reloads.append(1)
        return True, {"reloaded": True}
    return Ops(lambda: (True, {"broker": "x"}), lambda: b"mcp_router_up 1\n", reload,
               {"/services": lambda: {"services": []}}, journal)


@pytest.fixture
def reloads() -> list[int]:
    return []


@pytest.fixture
def client(tmp_path: Path, reloads: list[int]) -> Iterator[TestClient]:
    config = load_config(ROOT)
    console = Console(lambda: config, ConsoleBroker(UNREACHABLE, lambda: config),
                      Credentials(TOKEN), AuditLog(tmp_path / "audit.jsonl"))
    with TestClient(make_app(_ops(reloads), console), base_url="http://127.0.0.1:8080") as c:
        yield c


def test_probes_metrics_and_json_pages_answer_as_before(reloads: list[int]) -> None:
    """/healthz, /readyz, /metrics and /services keep their bodies; unknown paths are 404."""
    with TestClient(make_app(_ops(reloads))) as c:
        health, ready, metrics = c.get("/healthz"), c.get("/readyz"), c.get("/metrics")
        services, missing = c.get("/services"), c.get("/nope")

    assert (health.status_code, health.text) == (200, "ok\n")
    assert ready.json() == {"ready": True, "broker": "x"}
    assert metrics.text == "mcp_router_up 1\n"
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert services.json() == {"services": []}
    assert missing.status_code == 404


def test_reload_needs_the_token(client: TestClient, reloads: list[int]) -> None:
    """POST /reload: 401 without a credential, 403 with a wrong one, 200 with the token."""
    anonymous = client.post("/reload")
    wrong = client.post("/reload", headers={"Authorization": "Bearer nope"})
    right = client.post("/reload", headers={"Authorization": f"Bearer {TOKEN}"})

    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 403, 200)
    assert right.json() == {"reloaded": True}
    assert reloads == [1]


def test_messages_are_json_for_scripts(client: TestClient) -> None:
    """/messages/<id> with Accept: application/json is the journal's entry, or 404."""
    found = client.get("/messages/m-1", headers={"Accept": "application/json"})
    missing = client.get("/messages/m-2", headers={"Accept": "application/json"})

    assert found.json()["events"] == [{"at": "t", "event": "routed"}]
    assert missing.status_code == 404
    assert "not in the journal" in missing.json()["error"]


def test_changes_are_refused_before_the_broker_is_touched(client: TestClient) -> None:
    """Replay and purge without a session are 401, a wrong CSRF 403, another origin 403."""
    anonymous = client.post("/dead-letters/replay", data={"key": "abc"})
    purge = client.post("/dead-letters/purge", data={"key": "abc", "confirm": "1"})
    login = client.post("/login", data={"name": "alice", "token": TOKEN},
                        follow_redirects=False)
    forged = client.post("/dead-letters/replay", data={"key": "abc", "csrf": "guess"})
    cross = client.post("/dead-letters/replay", data={"key": "abc"},
                        headers={"Origin": "https://evil.example"})

    assert anonymous.status_code == 401
    assert "Sign in" in anonymous.text
    assert purge.status_code == 401
    assert login.status_code == 303
    assert "httponly" in login.headers["set-cookie"].lower()
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    assert cross.status_code == 403


def test_a_wrong_token_does_not_sign_in(client: TestClient) -> None:
    """The sign-in form answers 403 and sets no cookie for a wrong token."""
    response = client.post("/login", data={"name": "x", "token": "nope"}, follow_redirects=False)

    assert response.status_code == 403
    assert "set-cookie" not in response.headers


def test_assets_are_served_locally_with_strict_headers(client: TestClient) -> None:
    """htmx and its licence come from the router; pages forbid framing and foreign scripts."""
    htmx = client.get("/static/htmx.min.js")
    licence = client.get("/static/htmx.LICENSE")
    login = client.get("/login")

    assert htmx.status_code == 200
    assert "htmx" in htmx.text[:200]
    assert "Zero-Clause BSD" in licence.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY"
    assert "//" not in login.text.split("<main>")[0].replace("http://www.w3", "")


def test_a_hostile_letter_renders_escaped() -> None:
    """A body and header holding <script> appear as &lt;script&gt;, never as markup."""
    hostile = "<script>alert(1)</script>"
    x = letter(body=f'{{"order_id": "{hostile}"}}'.encode(), **{"x-evil": hostile,
                                                               "x-mcp-error": hostile})

    html = _ENV.get_template("letter.html").render(
        base="", csrf="", operator=None, writable=True, query=lambda **_: "", title="t",
        page="letters", problem=None, key="k", jaeger=None, check=None, **letter_facts(x))

    assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_message_page_shows_the_journal_even_without_a_broker(client: TestClient) -> None:
    """A browser gets the journey as a page: facts and the event timeline; no broker, no crash."""
    page = client.get("/messages/m-1", headers={"Accept": "text/html,application/xhtml+xml"})

    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "routed" in page.text
    assert "cannot" in page.text or "dead-letter queue" in page.text


async def test_a_broker_that_is_away_is_not_asked_again_at_once() -> None:
    """After a failed connection the console answers with that failure for a few seconds."""
    config = load_config(ROOT)
    broker = ConsoleBroker(UNREACHABLE, lambda: config)

    with pytest.raises(BrokerUnavailable) as first:
        await broker.depths(["q"])
    with pytest.raises(BrokerUnavailable) as again:
        await broker.browse()

    assert again.value is first.value
