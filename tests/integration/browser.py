"""A real headless browser for the console tests: Debian's chromium driven by Playwright.

Playwright's own browser builds cannot be downloaded here, so it drives
``/usr/bin/chromium`` (``apt-get install chromium``).  Its sync API lives in
one thread of its own; tests hand it steps (``await browser.run(step, ...)``)
while the router and the console keep serving in the test's event loop.
One browser serves the whole session; each test gets fresh contexts.  It is
launched when collection shows browser tests (``tests/integration/conftest.py``), in its
thread, so it starts while the tests before them run.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

T = TypeVar("T")


class Browser:
    """Chromium in a thread; ``run`` calls a step there and awaits its result."""

    def __init__(self) -> None:
        """Launch chromium in the browser's thread; the first step waits for it."""
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="browser")
        self._started = self._thread.submit(self._start)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- browser tests only

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)

    def new_page(self, base_url: str) -> Any:
        """A page in a context of its own (cookies apart); call from a step."""
        context = self._browser.new_context(base_url=base_url,
                                            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        return context.new_page()

    async def run(self, step: Callable[..., T], *args: Any) -> T:
        await asyncio.wait_for(asyncio.wrap_future(self._started), 60)  # a failed launch raises
        return await asyncio.get_running_loop().run_in_executor(self._thread, step, *args)

    def close(self) -> None:
        def stop() -> None:
            self._browser.close()
            self._playwright.stop()
        if self._started.exception(timeout=60) is None:
            self._thread.submit(stop).result(timeout=30)
        self._thread.shutdown()
