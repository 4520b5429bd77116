"""The operator's console in a real headless browser against a real router and broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.web.auth import Credentials
from router.web.serve import ConsoleSettings, router_server
from tests.integration.browser import CHROMIUM, Browser
from tests.integration.conftest import (
    AMQP_URL,
    Broker,
    ConfigDir,
    apply,
    free_port,
    http_call,
    order_created,
    wait_until,
)

TOKEN = "console-test-token"  # noqa: S105 -- a test credential
SHOTS = os.environ.get("MCP_CONSOLE_SCREENSHOTS")  # a directory: save each page there

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="needs chromium (apt-get install chromium)")


@dataclass
class Console:
    base: str
    router: Any
    directory: ConfigDir
    audit: Path


@pytest.fixture
async def console(config_dir: ConfigDir, start_router, tmp_path: Path) -> AsyncIterator[Console]:
    """A router on the test's configuration with its console on a free port."""
    without = dict(config_dir.topology)  # OrderCreated is unroutable until the route returns
    config_dir.write({**without, "routes": [r for r in without["routes"]
                                            if r["name"] != "order-created"]})
    router = await start_router(config_dir)
    config_dir.write(without)
    settings = ConsoleSettings(Credentials(TOKEN), tmp_path / "audit.jsonl", "http://jaeger:16686")
    server = router_server(router.service, AMQP_URL, settings)
    port = await server.start("127.0.0.1", 0)
    try:
        yield Console(f"http://127.0.0.1:{port}", router, config_dir, settings.audit_log)
    finally:
        await server.close()


async def _dead_letters(broker: Broker, c: Console, bodies: list[dict[str, Any]],
                        message_type: str = "OrderCreated") -> list[str]:
    ids = [f"{c.directory.prefix}-{uuid.uuid4().hex[:8]}" for _ in bodies]
    before = await broker.count(c.directory.dead_queue)
    for message_id, body in zip(ids, bodies, strict=True):
        await broker.publish(c.directory.ingress, body, type=message_type,
                             message_id=message_id, headers={"x-schema-version": 2})


    async def all_dead() -> bool:
        return await broker.count(c.directory.dead_queue) >= before + len(ids)
    await wait_until(all_dead, timeout=15)
    return ids


def _shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def _sign_in(page: Any) -> None:
    page.goto("/login")
    page.fill("main input[name=name]", "alice")
    page.fill("main input[name=token]", TOKEN)
    page.click("main form button[type=submit]")
    page.wait_for_selector("text=signed in as")


def _letter_key(page: Any, message_id: str) -> str:
    href = page.get_attribute(f"a:has-text('{message_id}')", "href")
    return str(href).rsplit("/", 1)[-1]


async def test_every_page_loads_and_the_flow_updates_itself(
        broker: Broker, console: Console, browser: Browser) -> None:
    """/, /dead-letters, a letter, a message, the audit log and sign-in load; / refreshes."""
    [message_id] = await _dead_letters(broker, console, [order_created()])

    def visit() -> dict[str, Any]:
        page = browser.new_page(console.base)
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url))
        page.goto("/")
        page.wait_for_function("document.querySelectorAll('svg.graph .node').length > 5")
        for _ in range(2):  # two refreshes of the panel (every 2 s)
            with page.expect_request(lambda r: "/flow/panel" in r.url):
                pass
        _shot(page, "flow")
        out: dict[str, Any] = {"flow": page.inner_text("main"),
                               "refreshes": sum("/flow/panel" in u for u in seen),
                               "graph": page.text_content("svg.graph")}
        page.goto("/dead-letters")
        _shot(page, "dead-letters")
        out["letters"] = page.inner_text("main")
        key = _letter_key(page, message_id)
        page.goto(f"/dead-letters/{key}")
        _shot(page, "letter")
        out["letter"] = page.inner_text("main")
        out["trace_link"] = page.get_attribute("a[href^='http://jaeger:16686/trace/']", "href")
        page.goto(f"/messages/{message_id}")
        _shot(page, "message")
        out["message"] = page.inner_text("main")
        for path in ("/audit", "/login"):
            page.goto(path)
            out[path] = page.inner_text("main")
        page.context.close()
        return out

    seen = await browser.run(visit)

    assert "Live flow" in seen["flow"]
    assert "order-created" not in seen["flow"].split("Routes")[0]
    assert seen["refreshes"] >= 2
    assert console.directory.name("billing") in seen["graph"]
    assert "unroutable" in seen["letters"]
    assert message_id in seen["letters"]
    assert "OrderCreated" in seen["letter"]
    assert "x-mcp-reason" in seen["letter"]
    assert seen["trace_link"] is not None
    assert message_id in seen["message"]
    assert "unroutable" in seen["message"]
    assert "Audit log" in seen["/audit"]
    assert "Console token" in seen["/login"]


async def test_filtering_dead_letters_by_reason_and_type(
        broker: Broker, console: Console, browser: Browser) -> None:
    """The filter form narrows to one reason, then one type; "replay all matching" replays
    just what the filter shows."""
    [ordered] = await _dead_letters(broker, console, [order_created()])
    [unknown] = await _dead_letters(broker, console, [{"x": 1}], message_type="Nope")

    def filter_letters() -> tuple[str, str, str]:
        page = browser.new_page(console.base)
        page.goto("/dead-letters")
        page.fill("input[name=reason]", "unknown_type")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"reason=unknown_type"))
        by_reason = page.inner_text("main")
        page.fill("input[name=reason]", "")
        page.fill("input[name=type]", "Order*")
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r"type=Order"))
        by_type = page.inner_text("main")
        url = page.url
        _sign_in(page)
        page.goto(url)
        page.click("text=Dry run, then replay all 1 matching")
        page.click("text=Replay 1 now")
        page.wait_for_selector("#summary")
        replayed = page.inner_text("#job")
        page.context.close()
        return by_reason, by_type, url, replayed

    by_reason, by_type, url, replayed = await browser.run(filter_letters)
    audit = [json.loads(line) for line in console.audit.read_text().splitlines()]

    assert unknown in by_reason
    assert "1 of 2" in by_reason
    assert "unroutable" not in by_reason
    assert unknown not in by_type
    assert "unroutable" in by_type
    assert "type=Order%2A" in url or "type=Order*" in url
    assert "replayed 1 of 1" in replayed
    assert [e["letters"] for e in audit] == [[ordered]]


async def test_replaying_one_letter_then_a_group_delivers_them(
        broker: Broker, console: Console, browser: Browser) -> None:
    """After the route is back: one letter replayed (dry run first), then the rest as a group."""
    ids = await _dead_letters(broker, console, [order_created() for _ in range(3)])
    assert (await console.router.service.reload()).ok  # order-created routes again

    def replay_one() -> tuple[str, str]:
        page = browser.new_page(console.base)
        _sign_in(page)
        page.goto("/dead-letters")
        page.check(f"input[name=key][value='{_letter_key(page, ids[0])}']")
        page.click("text=Dry run, then replay selected")
        dry = page.inner_text("main")
        _shot(page, "dry-run")
        page.click("text=Replay 1 now")
        page.wait_for_selector("#summary")
        done = page.inner_text("#job")
        page.context.close()
        return dry, done

    dry, done = await browser.run(replay_one)
    [first] = await broker.take(console.directory.name("billing"), 1)

    def replay_group() -> str:
        page = browser.new_page(console.base)
        _sign_in(page)
        page.goto("/dead-letters")
        page.click("text=Replay group")
        page.click("text=Replay 2 now")
        page.wait_for_selector("#summary")
        _shot(page, "job")
        text = page.inner_text("#job")
        page.goto("/audit")
        _shot(page, "audit")
        text += page.inner_text("main")
        page.context.close()
        return text

    group = await browser.run(replay_group)
    rest = await broker.take(console.directory.name("billing"), 2)

    assert "would route: order-created" in dry
    assert "replayed 1 of 1" in done
    assert first.message_id == ids[0]
    assert first.headers["x-mcp-replays"] == 1
    assert "replayed 2 of 2" in group
    assert "alice@127.0.0.1" in group
    assert {m.message_id for m in rest} == set(ids[1:])
    assert await broker.count(console.directory.dead_queue) == 0
    audit = [json.loads(line) for line in console.audit.read_text().splitlines()]
    assert [(e["action"], e["count"], e["who"]) for e in audit] == [
        ("replay", 1, "alice@127.0.0.1"), ("replay", 2, "alice@127.0.0.1")]
    assert sorted(audit[1]["letters"]) == sorted(ids[1:])


async def test_editing_an_invalid_letter_into_a_valid_one_routes_it(
        broker: Broker, console: Console, browser: Browser) -> None:
    """A still-invalid edit is refused with the schema's error; the fixed one is routed."""
    assert (await console.router.service.reload()).ok
    bad = order_created()
    bad["items"][0]["quantity"] = 0
    [message_id] = await _dead_letters(broker, console, [bad])

    def edit() -> tuple[str, str, str]:
        page = browser.new_page(console.base)
        _sign_in(page)
        page.goto("/dead-letters")
        page.goto(f"/dead-letters/{_letter_key(page, message_id)}")
        marked = page.inner_text("pre.body mark")
        text = page.input_value("textarea[name=body]")
        page.fill("textarea[name=body]", text.replace('"quantity": 0', '"quantity": -5'))
        page.click("text=Check and replay edited")
        refused = page.inner_text("#check")
        page.fill("textarea[name=body]", text.replace('"quantity": 0', '"quantity": 2'))
        page.click("text=Check and replay edited")
        page.wait_for_selector("#summary")
        done = page.inner_text("#job")
        page.context.close()
        return marked, refused, done

    marked, refused, done = await browser.run(edit)
    [routed] = await broker.take(console.directory.name("billing"), 1)

    assert '"quantity": 0' in marked
    assert "still invalid, not sent" in refused
    assert "minimum" in refused
    assert "replayed 1 edited dead letter" in done
    assert routed.message_id == message_id
    assert json.loads(routed.body)["items"][0]["quantity"] == 2
    [entry] = [json.loads(line) for line in console.audit.read_text().splitlines()]
    assert entry["action"] == "edit"
    assert entry["letters"] == [message_id]
    assert json.loads(entry["detail"]["original_body"])["items"][0]["quantity"] == 0
    assert json.loads(entry["detail"]["edited_body"])["items"][0]["quantity"] == 2


async def test_replay_without_a_credential_or_with_a_forged_form_is_refused(
        broker: Broker, console: Console, browser: Browser) -> None:
    """No session: 401; a session but no CSRF value: 403; a Bearer token works; nothing moved."""
    [message_id] = await _dead_letters(broker, console, [order_created()])

    def attempts() -> tuple[str, int, int, int]:
        page = browser.new_page(console.base)
        page.goto("/dead-letters")
        key = _letter_key(page, message_id)
        page.check(f"input[name=key][value='{key}']")
        page.click("text=Dry run, then replay selected")
        page.click("text=Replay 1 now")
        anonymous = page.inner_text("#refusal")
        _sign_in(page)
        forged = page.request.post(f"{console.base}/dead-letters/replay",
                                   form={"key": key}).status
        wrong = page.request.post(f"{console.base}/reload",
                                  headers={"Authorization": "Bearer nope"}).status
        reload = page.request.post(f"{console.base}/reload",
                                   headers={"Authorization": f"Bearer {TOKEN}"}).status
        page.context.close()
        return anonymous, forged, wrong, reload

    anonymous, forged, wrong, reload = await browser.run(attempts)

    assert "sign in" in anonymous.lower()
    assert (forged, wrong, reload) == (403, 403, 200)
    assert await broker.count(console.directory.dead_queue) == 1


async def test_a_hostile_body_and_header_render_as_text(
        broker: Broker, console: Console, browser: Browser) -> None:
    """<script> and onerror in a body and a header show as text and never run."""
    hostile = "<script>window.pwned=1</script><img src=x onerror='window.pwned=2'>"
    await broker.publish(console.directory.ingress, {"order_id": hostile}, type="OrderCreated",
                         message_id="hostile", headers={"x-evil": hostile})
    await wait_until(lambda: _one(broker, console.directory.dead_queue), timeout=15)

    def look() -> tuple[Any, str, str, str]:
        page = browser.new_page(console.base)
        page.goto("/dead-letters")
        listing = page.inner_text("main")
        page.goto(f"/dead-letters/{_letter_key(page, 'hostile')}")
        page.wait_for_timeout(300)
        _shot(page, "hostile")
        result = (page.evaluate("window.pwned"), page.inner_text("pre.body"),
                  page.inner_text("main"), listing)
        page.context.close()
        return result

    pwned, body, text, listing = await browser.run(look)

    assert pwned is None
    assert hostile in body
    assert f"x-evil\t{hostile}" in text or hostile in text.split("x-evil", 1)[1]
    assert "hostile" in listing


async def test_purge_names_how_many_and_is_audited(
        broker: Broker, console: Console, browser: Browser) -> None:
    """Purging all matching letters asks 'Delete 2 dead letters', then they are gone."""
    ids = await _dead_letters(broker, console, [order_created(), order_created()])

    def purge() -> tuple[str, str]:
        page = browser.new_page(console.base)
        _sign_in(page)
        page.goto("/dead-letters")
        page.click("text=Purge all 2 matching")
        question = page.inner_text("main")
        page.click("text=Delete 2 dead letters")
        page.wait_for_selector("#summary")
        done = page.inner_text("#job")
        page.context.close()
        return question, done

    question, done = await browser.run(purge)

    assert "Purge 2 dead letters?" in question
    assert "purged 2 dead letters" in done
    assert await broker.count(console.directory.dead_queue) == 0
    [entry] = [json.loads(line) for line in console.audit.read_text().splitlines()]
    assert (entry["action"], entry["count"], sorted(entry["letters"])) == ("purge", 2, sorted(ids))


async def _one(broker: Broker, queue: str) -> bool:
    return await broker.count(queue) >= 1


async def test_the_console_command_serves_without_a_router(
        broker: Broker, config_dir: ConfigDir, tmp_path: Path) -> None:
    """``mcp-router console`` reads the dead letters from the broker, no router running."""
    await apply(config_dir)
    await broker.publish(config_dir.topology["dead_letter"]["exchange"], order_created(),
                         routing_key="unroutable.OrderCreated", type="OrderCreated",
                         message_id="seen-by-console",
                         headers={"x-mcp-reason": "unroutable", "x-mcp-error": "no route"})
    port = free_port()
    env = {**os.environ, "MCP_AMQP_URL": AMQP_URL, "MCP_CONSOLE_AUDIT_LOG": str(tmp_path / "a")}
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603, ASYNC220 -- our own CLI; Popen returns at once
            [sys.executable, "-m", "router", "console", "--config", str(config_dir.path),
             "--http", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            return (await asyncio.to_thread(http_call, "GET", f"{base}/healthz"))[0] == 200
        except OSError:
            return False
    try:
        await wait_until(up, timeout=20)
        status, page = await asyncio.to_thread(http_call, "GET", f"{base}/dead-letters")
        refused, _ = await asyncio.to_thread(http_call, "POST", f"{base}/dead-letters/replay")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)

    assert status == 200, log.read_text()
    assert "seen-by-console" in page
    assert "read-only (no console token configured)" in page
    assert refused == 403
    assert code == 0
