"""Example consumer: billing, reading ``billing.orders`` of the repository's configuration.

Run it next to the router (``make run``)::

    .venv/bin/python -m examples.billing --config .
    MCP_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m examples.billing --config .

It invoices each ``OrderCreated`` (v1 has no currency: EUR is assumed), marks
invoices paid, refunded or shipped on ``OrderUpdated``, ``OrderCancelled``
and ``ShipmentDispatched`` (everything the ``order.*`` binding brings), and
handles each message id once: in memory, or in Redis when ``MCP_REDIS_URL``
is set, so that replicas share it.  An update for an order it has not
invoiced yet raises and is retried, in process and then on the broker: the
``OrderCreated`` may simply not have arrived yet.  SIGTERM or Ctrl-C stops
intake, finishes the handlers in flight and says goodbye on the control
exchange.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.broker.amqp import DEFAULT_URL
from router.config import Config, load_config
from router.errors import RouterError
from router.observe.logs import configure as configure_logs
from router.sdk import Context, Idempotency, InMemoryIdempotency, RedisIdempotency, Service
from router.tools.terminal import stop_on_signals

log = logging.getLogger("examples.billing")


class NotInvoicedYet(LookupError):
    """An update arrived before its order: worth retrying."""


@dataclass
class Ledger:
    """Billing's state: invoices by order id (a database in a real service)."""

    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    handled: list[tuple[str, str | None]] = field(default_factory=list)  # (type, message id)

    def invoice(self, order_id: str) -> dict[str, Any]:
        if order_id not in self.invoices:
            raise NotInvoicedYet(f"no invoice for order {order_id} yet")
        return self.invoices[order_id]


def build(config: Config, *, idempotency: Idempotency, ledger: Ledger | None = None,
          queue: str = "billing.orders", **options: Any) -> Service:
    """The billing service over ``queue``, its handlers writing to ``ledger``."""
    books = ledger if ledger is not None else Ledger()
    service = Service.from_config("billing", config, queue=queue, idempotency=idempotency,
                                  **options)

    @service.handler("OrderCreated", versions=[1, 2])
    async def invoice(order: dict[str, Any], ctx: Context) -> None:
        books.handled.append(("OrderCreated", ctx.message_id))
        books.invoices[order["order_id"]] = {
            "customer": order["customer_id"], "amount": order["total_amount"],
            "currency": order.get("currency", "EUR"), "status": "open",
            "message_id": ctx.message_id, "version": ctx.version}
        log.info("invoiced order %s: %s %s (v%s)", order["order_id"], order["total_amount"],
                 order.get("currency", "EUR"), ctx.version)

    @service.handler("OrderUpdated")
    async def update(change: dict[str, Any], ctx: Context) -> None:
        books.invoice(change["order_id"])["status"] = change["status"]
        books.handled.append(("OrderUpdated", ctx.message_id))

    @service.handler("OrderCancelled")
    async def refund(cancel: dict[str, Any], ctx: Context) -> None:
        books.invoice(cancel["order_id"])["status"] = "refunded"

    @service.handler("ShipmentDispatched")
    async def shipped(shipment: dict[str, Any], ctx: Context) -> None:
        books.invoice(shipment["order_id"])["shipped"] = shipment["tracking_number"]

    return service


async def main(args: argparse.Namespace) -> None:
    config = load_config(Path(args.config))
    redis_url = os.environ.get("MCP_REDIS_URL")
    store: Idempotency = RedisIdempotency.from_url(redis_url) if redis_url \
        else InMemoryIdempotency()
    service = build(config, idempotency=store, queue=args.queue,
                    concurrency=args.concurrency, heartbeat=args.heartbeat)
    stop = asyncio.Event()
    try:
        with stop_on_signals(stop):
            await service.run(args.amqp_url, stop)
    finally:
        await store.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=".", help="configuration directory (default .)")
    parser.add_argument("--amqp-url", default=os.environ.get("MCP_AMQP_URL", DEFAULT_URL),
                        metavar="URL", help="broker URL (default: $MCP_AMQP_URL or local guest)")
    parser.add_argument("--queue", default="billing.orders",
                        help="the queue to consume, as configured (billing.orders)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="handlers running at once (16)")
    parser.add_argument("--heartbeat", type=float, default=5.0,
                        help="seconds between announcements on the control exchange (5)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    configure_logs(os.environ.get("MCP_LOG_LEVEL", "INFO"))
    try:
        asyncio.run(main(parse()))
    except (RouterError, OSError) as exc:  # a bad configuration, no broker: one line, no traceback
        sys.exit(f"billing: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
