"""Walk one message from the consumer callback to the ack and count the router's calls.

    python -m bench.messagepath [-v]

The router's handler runs on a synthetic delivery (the throughput benchmark's
configuration: a schema, a CEL route, one copy) with publishes confirmed by a
stub pool; ``sys.setprofile`` records every call into a ``router.*`` function
(value constructors, comprehensions and lambdas left out).  Printed: all calls,
the calls that cross from one module into another (hops), the modules touched
and, per module, how often it is entered from another and how many of its
functions run.  ``-v`` lists each hop in order.  docs/design-delivery.md uses it.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from types import FrameType
from typing import Any

import aiormq.abc
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from bench.entities import BODY, Names, config_dir
from router.broker.consume import Acker
from router.broker.publish import Publisher
from router.broker.settle import Settler
from router.config.configuration import load_config
from router.runtime.intake import Intake
from router.runtime.service import RouterService, Settings

_SKIPPED = ("__init__", "__new__", "__post_init__", "__eq__", "__hash__", "__enter__",
            "__exit__")


class _Confirming:
    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    async def wait_usable(self, within: float) -> bool:
        return True


class _AckSink:
    async def basic_ack(self, *_: Any, **__: Any) -> None:
        return None


def _delivery() -> aiormq.abc.DeliveredMessage:
    props = Basic.Properties(message_id="m-1", message_type="OrderCreated",
                             content_type="application/json")
    return aiormq.abc.DeliveredMessage(
        delivery=Basic.Deliver(consumer_tag="c", delivery_tag=1, redelivered=False,
                               exchange="bench.ingress", routing_key="OrderCreated"),
        header=ContentHeader(properties=props, body_size=len(BODY)), body=BODY,
        channel=None)  # type: ignore[arg-type] # the handler never touches the channel


async def walk() -> list[tuple[str, str, str]]:
    """Every ``(caller module, callee module, function)`` of one routed message."""
    service = RouterService(load_config(config_dir(Names("path"))),
                            Settings("amqp://guest:guest@localhost/"))
    settler = Settler(Publisher(_Confirming()), service.metrics, journal=service.journal,
                      holds=service.consumers.holds, breakers=service.breakers)
    intake, acker = Intake(service), Acker(_AckSink())  # type: ignore[arg-type] # a stub
    await intake._handle(_delivery(), settler)  # warm the caches a real run warms once
    calls: list[tuple[str, str, str]] = []

    def profile(frame: FrameType, event: str, _: Any) -> None:
        module = frame.f_globals.get("__name__", "")
        name = frame.f_code.co_qualname
        last = name.rsplit(".", 1)[-1]
        if event != "call" or not module.startswith("router.") or last in _SKIPPED \
                or "<" in last:
            return
        caller = frame.f_back.f_globals.get("__name__", "") if frame.f_back else ""
        calls.append((caller, module, name))

    sys.setprofile(profile)
    acker.started(1)
    verdict = await intake._handle(_delivery(), settler)
    acker.finished(1, verdict)
    sys.setprofile(None)
    return calls


def main() -> None:
    calls = asyncio.run(walk())
    hops = [c for c in calls if c[0] != c[1]]
    entered = collections.Counter(c[1] for c in hops)
    run = collections.Counter(c[1] for c in calls)
    print(f"router function calls: {len(calls)}; hops between modules: {len(hops)}; "
          f"modules: {len(run)}")
    for module, count in entered.most_common():
        print(f"  {module:32} entered {count:2d}, {run[module]:2d} calls")
    if "-v" in sys.argv:
        for caller, module, name in hops:
            print(f"  {caller} -> {module}.{name}")


if __name__ == "__main__":
    main()
