"""``mcp-router follow MESSAGE_ID``: where one message went, as a timeline.

The running router is asked first (``GET /messages/<id>`` on its ``--http``
address: its journal of recent messages).  When it does not remember the
message (dropped as the oldest, a restarted router, another replica) or does
not answer, the dead-letter queue is looked into, without taking anything
from it.  Exit 0 when something was found, 1 when nothing was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from router.broker.amqp import connect
from router.config.configuration import Config
from router.errors import BrokerUnavailable
from router.runtime.http import parse_address
from router.tools.dlq import open_queue
from router.tools.lettertext import clean, letter_record
from router.tools.terminal import emit, fail
from router.tools.timeline import dead_letter_lines, timeline

__all__ = ["DEFAULT_HTTP", "ask_router", "run_follow"]

DEFAULT_HTTP = "127.0.0.1:8080"
TIMEOUT = 5.0


def ask_router(address: str, message_id: str) -> dict[str, Any] | str:
    """The router's journal record of ``message_id``, or why there is none."""
    host, port = parse_address(address)
    url = f"http://{host}:{port}/messages/{quote(message_id, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            found = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return f"the router at {address} does not remember it"
        return f"the router at {address} answered {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"no router answers at {address} ({reason})"
    return found if isinstance(found, dict) else f"the router at {address} answered {found!r}"


async def _dead_letters(config: Config, url: str, message_id: str) -> list[Any] | str:
    queue = config.topology.dead_letter.queue
    try:
        connection = await connect(url, "mcp-router follow")
    except BrokerUnavailable as exc:
        return str(exc)
    try:
        async with open_queue(connection, queue) as dlq:
            return [h.letter for h in await dlq.fetch(lambda x: x.message_id == message_id)]
    except Exception as exc:  # noqa: BLE001 -- a missing queue or a lost broker: said, not raised
        return f"cannot read {queue!r}: {exc}"
    finally:
        await connection.close()


async def run_follow(args: argparse.Namespace, config: Config) -> int:
    """Print the timeline of ``args.message_id``; 1 when neither source knows it."""
    found = await asyncio.to_thread(ask_router, args.http, args.message_id)
    as_json = getattr(args, "json", False)
    if isinstance(found, dict):
        emit([json.dumps(found, indent=2)] if as_json else timeline(found))
        return 0
    letters = await _dead_letters(config, args.amqp_url, args.message_id)
    if isinstance(letters, list) and letters:
        print(f"{found}; found in the dead letters:", file=sys.stderr if as_json else sys.stdout,
              flush=True)
        emit([json.dumps([letter_record(x) for x in letters], indent=2)] if as_json
             else dead_letter_lines(letters))
        return 0
    where = clean(config.topology.dead_letter.queue)
    why = "it is not there either" if isinstance(letters, list) else clean(letters)
    return fail(f"message {clean(args.message_id)!r}: {found}, and the dead-letter queue "
                f"{where!r}: {why}")
