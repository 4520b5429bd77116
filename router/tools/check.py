"""``mcp-router check`` and ``mcp-router services``: what the files hold, and who is live.

``check`` lints the configuration without a broker and prints what it holds;
with ``--live`` it also takes a census of the live services
(``router.discovery.census``) and flags the routes no live service consumes.
``services`` prints that census.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping

from router.config.configuration import Config, check_config, load_config
from router.core.counts import plural
from router.discovery.census import format_services, live_problems, take_census
from router.tools.keyscli import key_problems
from router.tools.terminal import fail

__all__ = ["run_check", "run_services"]


def run_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """0 when the configuration (and its data keys, with a KEK in ``environ``) is sound."""
    problems = check_config(args.config)
    if not problems:
        problems = key_problems(load_config(args.config), environ)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return fail(f"{plural(len(problems), 'problem')} in {args.config}")
    config = load_config(args.config)
    if args.live and (status := _check_live(args, config)):
        return status
    print("ok: " + ", ".join(_counts(config)))
    return 0


async def run_services(args: argparse.Namespace, config: Config) -> int:
    """Print the live service instances that answered within ``--wait`` seconds."""
    census = await take_census(args.amqp_url, args.wait, config.topology.control.exchange)
    print(format_services(census, as_json=args.json))
    return 0


def _check_live(args: argparse.Namespace, config: Config) -> int:
    """1 when some route has no live consumer (each one said on stderr), else 0."""
    census = asyncio.run(take_census(args.amqp_url, args.wait,
                                     config.topology.control.exchange))
    unconsumed = live_problems(config, census, str(args.config / "topology.yaml"))
    for problem in unconsumed:
        print(problem, file=sys.stderr)
    print(f"live: {plural(len(census.live()), 'service instance')}, {len(unconsumed)} "
          f"of {plural(len(config.topology.routes), 'route')} without a live consumer")
    if unconsumed:
        return fail(f"{plural(len(unconsumed), 'route')} without a live consumer")
    return 0


def _counts(config: Config) -> list[str]:
    """What the configuration holds, one phrase per kind of thing."""
    t = config.topology
    versions = sum(len(v) for v in config.registry.types.values())
    p = config.policies
    return [plural(len(t.exchanges), "exchange"), plural(len(t.queues), "queue"),
            plural(len(t.bindings), "binding"), plural(len(t.routes), "route"),
            f"{plural(len(config.registry.types), 'message type')} "
            f"({plural(versions, 'schema version')})", plural(len(p.retry), "retry rule"),
            plural(len(p.authorization.rules), "authorization rule"),
            plural(len(p.limits), "limit"), plural(len(p.priority), "priority", "priorities")]
