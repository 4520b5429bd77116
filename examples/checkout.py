"""Example producer: checkout, publishing orders to the ingress of the repository's configuration.

::

    .venv/bin/python -m examples.checkout --config . --orders 5

For each order: ``OrderCreated`` v2, then ``OrderUpdated`` (status ``paid``),
validated against ``schemas/`` before publishing and confirmed by the broker.
Prints one line per message: type, message id.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from router.broker.amqp import DEFAULT_URL, connect
from router.config import load_config
from router.errors import RouterError
from router.observe.logs import configure as configure_logs
from router.sdk import ServicePublisher


def order(total: float, customer: str = "c-1") -> dict[str, Any]:
    """An ``OrderCreated`` v2 body with one item."""
    return {
        "order_id": str(uuid.uuid4()), "customer_id": customer, "total_amount": total,
        "currency": "EUR", "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}],
    }


async def place_order(publisher: ServicePublisher, total: float) -> tuple[str, str]:
    """Publish one order and its payment; the two message ids."""
    created = order(total)
    first = await publisher.publish("OrderCreated", created, version=2)
    second = await publisher.publish("OrderUpdated", {
        "order_id": created["order_id"], "status": "paid",
        "updated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}, version=1,
        correlation_id=created["order_id"])
    return first, second


async def main(args: argparse.Namespace) -> None:
    config = load_config(Path(args.config))
    connection = await connect(args.amqp_url, "checkout")
    try:
        publisher = await ServicePublisher.open(
            connection, config.topology.ingress.exchange, app_id="checkout",
            registry=config.registry)
        for n in range(args.orders):
            created, paid = await place_order(publisher, total=25.0 * (n + 1))
            print(f"OrderCreated {created}\nOrderUpdated {paid}")
            await asyncio.sleep(args.interval)
    finally:
        await connection.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=".", help="configuration directory (default .)")
    parser.add_argument("--amqp-url", default=os.environ.get("MCP_AMQP_URL", DEFAULT_URL),
                        metavar="URL", help="broker URL (default: $MCP_AMQP_URL or local guest)")
    parser.add_argument("--orders", type=int, default=3,
                        help="how many orders to place, each an OrderCreated and an "
                             "OrderUpdated (3)")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between orders (0)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    configure_logs(os.environ.get("MCP_LOG_LEVEL", "INFO"))
    try:
        asyncio.run(main(parse()))
    except (RouterError, OSError) as exc:  # a bad configuration, no broker: one line, no traceback
        sys.exit(f"checkout: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)
