"""The console's cost on routing: throughput with and without someone watching ``/``.

The router (``RouterService`` with its ``--http`` server and console, as
``mcp-router run --http`` serves them) drains a backlog of valid orders
several times; every other round a watcher keeps the live flow page open:

* ``browser``: Debian's chromium (Playwright, ``/usr/bin/chromium``) showing
  ``/``, whose htmx panel refreshes every two seconds;
* ``poller``: a plain HTTP client fetching ``/flow/panel`` every two seconds
  the way that page does, without a browser's own CPU use on this machine.

Prints the CPU one refresh of the panel costs the router's process (a
figure the machine's load does not blur), each round, and the ratio of the
medians (watched / not watched).

    python -m bench.console [--messages 20000] [--rounds 3] [--watcher browser|poller|both]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import aio_pika
import yaml

from bench.entities import (
    PREFETCH,
    ROOT,
    URL,
    Names,
    cleanup,
    fill,
    queue_depth,
    wait_drained,
)
from bench.rows import router_starter
from router.config.configuration import load_config
from router.runtime.service import RouterService, Settings
from router.web.auth import Credentials
from router.web.flow import totals
from router.web.serve import ConsoleSettings, router_server

REFRESH = 2.0  # seconds, as the page's hx-trigger


def _browser(base: str, stop: threading.Event) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only this watcher

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = chromium.new_page()
        page.goto(base + "/")
        while not stop.is_set():
            page.wait_for_timeout(200)
        chromium.close()


def _poller(base: str, stop: threading.Event) -> None:
    while not stop.is_set():
        with urllib.request.urlopen(base + "/flow/panel", timeout=10) as r:  # noqa: S310
            r.read()
        stop.wait(REFRESH)


async def one_round(connection: aio_pika.abc.AbstractConnection, names: Names, workdir: Path,
                    count: int, watcher: Callable[[str, threading.Event], None] | None) -> float:
    """Messages per second draining ``count``, with ``watcher`` on the console meanwhile."""
    await fill(connection, names.ingress, count)
    service = RouterService(load_config(workdir), Settings(URL, prefetch=PREFETCH))
    server = router_server(service, URL, ConsoleSettings(Credentials(None),
                                                         workdir / "audit.jsonl", None))
    port = await server.start("127.0.0.1", 0)
    stop_watching = threading.Event()
    thread = None
    if watcher is not None:
        thread = threading.Thread(target=watcher, args=(f"http://127.0.0.1:{port}",
                                                        stop_watching), daemon=True)
        thread.start()
    # Both ways wait the same: the page opens and refreshes once, the broker settles the fill.
    await asyncio.sleep(3)
    stop = asyncio.Event()
    began = time.perf_counter()
    task = asyncio.create_task(service.run(stop))
    await wait_drained(connection, names, count)
    rate = count / (time.perf_counter() - began)
    stop.set()
    await task
    stop_watching.set()
    if thread is not None:
        await asyncio.to_thread(thread.join, 30)
    await server.close()
    channel = await connection.channel()
    await (await channel.get_queue(names.dest_q, ensure=False)).purge()
    await channel.close()
    return rate


async def panel_cost(workdir: Path, requests: int = 100) -> tuple[float, float]:
    """CPU seconds this process spends per ``/flow/panel`` refresh, router idle, and per
    sample of the rates (once a second, watched or not).

    The server runs in this process, so its work is counted in full (and the
    client's too: an upper bound).  Independent of how busy the machine is.
    """
    service = RouterService(load_config(workdir), Settings(URL, prefetch=PREFETCH))
    server = router_server(service, URL, ConsoleSettings(Credentials(None),
                                                         workdir / "audit.jsonl", None))
    port = await server.start("127.0.0.1", 0)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    def fetch() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/flow/panel",
                                    timeout=10) as r:
            r.read()

    await asyncio.to_thread(fetch)  # warm: templates compiled, console connected
    began = time.process_time()
    for _ in range(requests):
        await asyncio.to_thread(fetch)
    spent = (time.process_time() - began) / requests
    began = time.process_time()
    for _ in range(requests):
        totals(service.metrics.render())
    sampling = (time.process_time() - began) / requests
    stop.set()
    await task
    await server.close()
    return spent, sampling


async def main(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect(URL)
    names = Names("console")
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-console-"))
    shutil.copytree(ROOT / "schemas", workdir / "schemas")
    (workdir / "topology.yaml").write_text(yaml.safe_dump(names.topology()))
    watchers = {"browser": _browser, "poller": _poller}
    chosen = list(watchers) if args.watcher == "both" else [args.watcher]
    try:
        stop = await router_starter(URL, workdir)()  # declares the topology
        await stop()
        await one_round(connection, names, workdir, 1000, None)  # warms up
        cost, sampling = await panel_cost(workdir)
        print(f"one refresh of /flow/panel: {cost * 1000:.2f} ms of CPU; a page watching "
              f"refreshes every {REFRESH:g} s: {cost / REFRESH * 100:.2f} % of one core; "
              f"sampling the rates: {sampling * 1000:.2f} ms a second "
              f"({sampling * 100:.2f} %)", flush=True)
        for name in chosen:
            plain: list[float] = []
            watched: list[float] = []
            for i in range(args.rounds):
                plain.append(await one_round(connection, names, workdir, args.messages, None))
                watched.append(await one_round(connection, names, workdir, args.messages,
                                               watchers[name]))
                print(f"{name} round {i + 1}: {plain[-1]:7.0f} msgs/s not watched, "
                      f"{watched[-1]:7.0f} watched", flush=True)
            ratio = statistics.median(watched) / statistics.median(plain)
            print(f"{name}: median {statistics.median(plain):.0f} msgs/s not watched, "
                  f"{statistics.median(watched):.0f} watched: {ratio:.3f}x "
                  f"({(ratio - 1) * 100:+.1f} %)")
        if await queue_depth(connection, names.dlq):
            raise SystemExit("bench messages were dead-lettered: the run is invalid")
    finally:
        await cleanup(connection, names)
        await connection.close()
        shutil.rmtree(workdir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--watcher", choices=("browser", "poller", "both"), default="both")
    arguments = parser.parse_args()
    try:
        import uvloop
        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
