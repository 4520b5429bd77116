"""``mcp-router apply`` and ``mcp-router plan``: declare the topology, or say what would change.

``plan`` reads the broker through the management API when it answers (any
node of a cluster shows what every node holds), else by passive declarations,
which cannot compare bindings; ``--via`` forces one or the other.
"""

from __future__ import annotations

import sys
from enum import StrEnum

from router.broker.amqp import broker_urls, connect, redact
from router.broker.declare import declare_config
from router.broker.inventory import compare, fetch_inventory, management_url_for
from router.broker.plan import plan_config
from router.config.alternatives import plan_lines
from router.config.configuration import Config

__all__ = ["Via", "run_apply", "run_plan"]


class Via(StrEnum):
    """How ``plan`` reads the broker (``--via``)."""

    AUTO = "auto"  # the management API when it answers, else passive declarations
    MANAGEMENT = "management"
    PASSIVE = "passive"


async def run_apply(config: Config, url: str) -> int:
    """Declare every entity of the topology (idempotently), printing each one."""
    connection = await connect(url, "mcp-router apply")
    try:
        for entity in await declare_config(connection, config):
            print(f"declared {entity}")
    finally:
        await connection.close()
    return 0


async def run_plan(config: Config, url: str, management_url: str | None, via: Via) -> int:
    """Print what apply would create and what conflicts; 1 when anything conflicts."""
    api = management_url or management_url_for(broker_urls(url)[0])
    try:
        if via is Via.PASSIVE:
            raise OSError("not asked for")
        plan = compare(config, await fetch_inventory(api, broker_urls(url)[0]))
        how = f"read through the management API at {redact(api)}"
    except OSError as exc:
        if via is Via.MANAGEMENT:
            print(f"error: management API at {redact(api)}: {exc}", file=sys.stderr)
            return 1
        connection = await connect(url, "mcp-router plan")
        try:
            plan = await plan_config(connection, config)
        finally:
            await connection.close()
        how = ("by passive declarations (bindings are not compared; apply declares them "
               "idempotently)" if via is Via.PASSIVE else "by passive declarations (no "
               f"management API answered at {redact(api)}; bindings are not compared)")
    for line in plan_lines(config.topology):  # how copies are shared out (no broker needed)
        print(line)
    for entity in plan.create:
        print(f"+ create {entity}")
    for conflict in plan.conflicts:
        print(f"! conflict {conflict}")
    print(f"{len(plan.create)} to create, {len(plan.unchanged)} unchanged, "
          f"{len(plan.conflicts)} in conflict; {how}")
    return 1 if plan.conflicts else 0
