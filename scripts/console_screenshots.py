"""Screenshots of the operator's console for docs/console/, from a live demo.

Routes the repository's example configuration (every name prefixed ``shop.``,
so it shares the broker with nobody), publishes a minute of orders with some
invalid and unknown ones, keeps a billing consumer running, then shows each
page in Debian's chromium and saves it.  Deletes what it declared.

    python scripts/console_screenshots.py [--seconds 60] [--out docs/console]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aio_pika

from router.config.configuration import load_config
from router.runtime.service import RouterService, Settings
from router.testing.harness import delete_entities
from router.testing.prefixing import copy_prefixed
from router.web.auth import Credentials
from router.web.serve import ConsoleSettings, router_server

ROOT = Path(__file__).resolve().parents[1]
URL = os.environ.get("MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/")
FOLLOWED = "order-to-follow-0001"
TOKEN = "demo-token"  # noqa: S105 -- a throwaway demo credential
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def order(i: int, quantity: int = 1) -> dict[str, Any]:
    total = round(random.uniform(5, 1500), 2)  # noqa: S311 -- demo data
    return {"order_id": str(uuid.uuid4()), "customer_id": f"c-{i % 40}", "total_amount": total,
            "currency": "EUR", "created_at": "2026-11-24T10:00:00Z",
            "items": [{"sku": f"SKU-{i % 7 + 1}", "quantity": quantity, "unit_price": total}]}


async def publish(connection: aio_pika.abc.AbstractConnection, ingress: str,
                  seconds: float) -> None:
    """About 20 orders a second, rising and falling; a few invalid and unknown ones."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(ingress, ensure=False)
    loop = asyncio.get_running_loop()
    start, i = loop.time(), 0
    while (now := loop.time() - start) < seconds:
        i += 1
        kind, body = "OrderCreated", order(i)
        if i % 23 == 0:
            body = order(i, quantity=0)
        elif i % 41 == 0:
            body = {k: v for k, v in order(i).items() if k != "customer_id"}
        elif i % 57 == 0:
            kind, body = "OrderRefunded", {"order_id": str(uuid.uuid4())}
        await exchange.publish(aio_pika.Message(
            json.dumps(body).encode(), type=kind, message_id=str(uuid.uuid4()),
            content_type="application/json", headers={"x-schema-version": 2}),
            routing_key=kind)
        await asyncio.sleep(1 / (20 + 15 * math.sin(now / 8)))
        if i == 100:  # one big order to follow: two routes and the audit stream
            await exchange.publish(aio_pika.Message(
                json.dumps({**order(i), "total_amount": 1800.0}).encode(), type="OrderCreated",
                message_id=FOLLOWED, content_type="application/json",
                headers={"x-schema-version": 2}), routing_key="OrderCreated")


def shoot(base: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900}, base_url=base)
        page.goto("/login")
        page.fill("main input[name=name]", "alice")
        page.fill("main input[name=token]", TOKEN)
        page.click("main form button[type=submit]")
        page.goto("/")
        page.wait_for_timeout(2500)
        page.screenshot(path=str(out / "flow.png"), full_page=True)
        page.goto("/dead-letters")
        page.screenshot(path=str(out / "dead-letters.png"))  # the top: groups, filters
        page.locator("tr", has_text="quantity").locator("a[href^='/dead-letters/']").first.click()
        page.screenshot(path=str(out / "letter.png"), full_page=True)
        text = page.input_value("textarea[name=body]")
        page.fill("textarea[name=body]", text.replace('"quantity": 0', '"quantity": 1'))
        page.click("button[value=check]")
        page.locator("#check").scroll_into_view_if_needed()
        page.screenshot(path=str(out / "edit.png"))
        page.click("button[value=send]")
        page.wait_for_selector("#summary")
        page.goto("/dead-letters?reason=unknown_type")
        page.click("text=Replay group")
        page.screenshot(path=str(out / "dry-run.png"), full_page=True)
        page.click("button:has-text('now')")
        page.wait_for_selector("#summary")
        page.screenshot(path=str(out / "job.png"), full_page=True)
        page.goto("/dead-letters?reason=schema_invalid")
        page.click("text=Purge all")
        page.screenshot(path=str(out / "purge.png"))
        page.click("button:has-text('Delete')")
        page.wait_for_selector("#summary")
        page.goto("/audit")
        page.screenshot(path=str(out / "audit.png"), full_page=True)
        page.goto(f"/messages/{FOLLOWED}")
        page.screenshot(path=str(out / "message.png"), full_page=True)
        browser.close()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        copy_prefixed(ROOT, directory, "shop")
        config = load_config(directory)
        service = RouterService(config, Settings(URL))
        server = router_server(service, URL, ConsoleSettings(
            Credentials(TOKEN), directory / "audit.jsonl", "http://localhost:16686"))
        port = await server.start("127.0.0.1", 0)
        stop = asyncio.Event()
        routing = asyncio.create_task(service.run(stop))
        connection = await aio_pika.connect(URL)
        try:
            while not service.ready:
                await asyncio.sleep(0.05)
            consumer = await connection.channel()
            await consumer.set_qos(prefetch_count=10)
            billing = await consumer.get_queue("shop.billing.orders", ensure=False)
            await billing.consume(lambda m: m.ack())
            traffic = asyncio.create_task(
                publish(connection, config.topology.ingress.exchange, args.seconds + 60))
            await asyncio.sleep(args.seconds)  # the chart has a minute to show, still moving
            await asyncio.to_thread(shoot, f"http://127.0.0.1:{port}", args.out)
            traffic.cancel()
        finally:
            stop.set()
            await routing
            await server.close()
            t = config.topology
            queues = [q.name for q in (*t.all_queues(), *config.retry_queues())]
            await delete_entities(connection, [e.name for e in t.all_exchanges()], queues)
            await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    asyncio.run(main(parser.parse_args()))
