"""The ``mcp_router`` pytest fixture, used exactly as a service's own tests would."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

from router.testing.plugin import RouterUnderTest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

# The repository root is the example configuration (rootdir-relative).
pytestmark = pytest.mark.mcp_router(config=".")


def order(total: float = 25.0) -> dict[str, Any]:
    """A valid OrderCreated v2 body."""
    return {"order_id": str(uuid.uuid4()), "customer_id": "c-1", "total_amount": total,
            "currency": "EUR", "created_at": "2026-11-24T10:00:00Z",
            "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": total}]}


async def test_a_published_order_is_routed_to_billing(mcp_router: RouterUnderTest) -> None:
    """An OrderCreated published to the ingress arrives in billing.orders, decoded."""
    body = order()

    message_id = await mcp_router.publish("OrderCreated", body, version=2)

    [copy] = await mcp_router.expect("billing.orders")
    assert copy.body == body
    assert copy.message_id == message_id
    assert copy.message_type == "OrderCreated"
    assert copy.route == "order-created"
    assert (copy.exchange, copy.routing_key) == ("orders", "order.created")


async def test_routed_by_route_name_finds_every_queue_it_reaches(
        mcp_router: RouterUnderTest) -> None:
    """A big order's review copy lands in orders.review and (order.*) billing.orders."""
    body = order(total=1500.0)

    await mcp_router.publish("OrderCreated", body, version=2)

    copies = await mcp_router.routed("big-orders-to-review", count=2)
    assert {c.queue for c in copies} == {"orders.review", "billing.orders"}
    assert all(c.body["order_id"] == body["order_id"] for c in copies)
    [plain] = await mcp_router.routed("order-created")
    assert plain.queue == "billing.orders"


async def test_stream_queues_are_read_from_the_start(mcp_router: RouterUnderTest) -> None:
    """audit.log, a stream, shows the copy of the audit-everything route."""
    body = order()

    await mcp_router.publish("OrderCreated", body, version=2)

    [audited] = await mcp_router.expect("audit.log")
    assert audited.route == "audit-everything"
    assert audited.body == body


async def test_an_invalid_message_is_a_dead_letter_with_its_reason(
        mcp_router: RouterUnderTest) -> None:
    """A body that breaks its schema is dead-lettered as schema_invalid, naming the field."""
    body = {**order(), "currency": "euro"}

    message_id = await mcp_router.publish("OrderCreated", body, version=2)

    [dead] = await mcp_router.dead_letters(reason="schema_invalid")
    assert dead.message_id == message_id
    assert dead.body == body
    assert "/currency" in (dead.error or "")


async def test_a_wait_that_times_out_says_what_happened_instead(
        mcp_router: RouterUnderTest) -> None:
    """expect() fails after its timeout, naming the queue and the dead letters seen."""
    await mcp_router.publish("OrderCreated", {"order_id": "not-a-uuid"}, version=2)
    await mcp_router.dead_letters(reason="schema_invalid", count=1)
    await mcp_router.publish("NoSuchType", {})

    with pytest.raises(AssertionError) as failure:
        await mcp_router.expect("shipping.orders", timeout=0.5)

    text = str(failure.value)
    assert "expected 1 message in queue 'shipping.orders' within 0.5s, got 0" in text
    assert re.search(r"dead letter: NoSuchType unknown_type: ", text)


async def test_names_are_unique_to_the_test(mcp_router: RouterUnderTest) -> None:
    """Every exchange and queue carries the test's prefix; ``name`` gives the real one."""
    assert mcp_router.ingress == f"{mcp_router.prefix}.mcp.ingress"
    assert mcp_router.name("billing.orders") == f"{mcp_router.prefix}.billing.orders"
    assert {q.name.split(".", 1)[0] for q in mcp_router.config.broker_queues()} == {
        mcp_router.prefix}


USER_TEST = """
import pytest

@pytest.mark.asyncio
@pytest.mark.mcp_router(config={config!r})
async def test_billing_gets_orders(mcp_router):
    print(f"PREFIX={{mcp_router.prefix}}")
    await mcp_router.publish("OrderCreated", {body!r}, version=2)
    [copy] = await mcp_router.expect("billing.orders")
    assert copy.body["order_id"] == {order_id!r}

@pytest.mark.asyncio
@pytest.mark.mcp_router(config={config!r})
async def test_nothing_for_shipping(mcp_router):
    await mcp_router.expect("shipping.orders", timeout=0.2)
"""


README_EXAMPLE = """
import pytest

pytestmark = pytest.mark.mcp_router(config={config!r})  # relative to the rootdir

async def test_orders_reach_billing(mcp_router, order):   # order: a valid body
    await mcp_router.publish("OrderCreated", order, version=2)

    [copy] = await mcp_router.expect("billing.orders")          # a queue, as configured
    assert copy.body == order and copy.route == "order-created"

async def test_bad_orders_are_dead_lettered(mcp_router, order):
    await mcp_router.publish("OrderCreated", {{**order, "currency": "euro"}}, version=2)

    [dead] = await mcp_router.dead_letters(reason="schema_invalid")
    assert "/currency" in dead.error
"""

ORDER_FIXTURE = """
import pytest

@pytest.fixture
def order():
    return {body!r}
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
async def test_the_readme_example_runs_as_written_in_either_asyncio_mode(
        pytester: pytest.Pytester, mode: str) -> None:
    """The README's two tests, without an asyncio mark, pass in strict and in auto mode."""
    pytester.makeconftest(ORDER_FIXTURE.format(body=order()))
    pytester.makepyfile(test_readme=README_EXAMPLE.format(config=str(ROOT)))

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o",
                                           f"asyncio_mode={mode}")

    result.assert_outcomes(passed=2)


async def test_a_user_test_file_runs_through_the_plugin_and_cleans_up(
        pytester: pytest.Pytester) -> None:
    """In strict asyncio mode, a passing and a failing test; nothing is left on the broker."""
    body = order()
    pytester.makepyfile(test_user=USER_TEST.format(config=str(ROOT), body=body,
                                                   order_id=body["order_id"]))

    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider",
                                           "-o", "asyncio_mode=strict")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*expected 1 message in queue 'shipping.orders' within*"])
    [prefix] = re.findall(r"PREFIX=(\S+)", result.stdout.str())
    connection = await aio_pika.connect(__import__("os").environ.get(
        "MCP_AMQP_URL", "amqp://guest:guest@localhost:5672/"))
    try:
        for queue in ("billing.orders", "mcp.router.ingress", "mcp.dead-letters"):
            channel = await connection.channel()
            with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
                await channel.declare_queue(f"{prefix}.{queue}", passive=True)
    finally:
        await connection.close()
