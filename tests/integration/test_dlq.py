"""``mcp-router dlq`` against the real broker: browse, replay and purge, losing nothing.

Dead letters are made by the router itself from bad messages; the CLI runs as
a child process, as a user would run it.  Commands that browse one queue run
one after the other: a browsing channel holds what it fetched, so a second
browser at the same time would not see those messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from router.broker.deadletterqueue import open_held
from tests.integration.conftest import (
    AMQP_URL,
    ROOT,
    Broker,
    ConfigDir,
    apply,
    order_created,
    wait_until,
)

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PAYMENT = {"payment_id": "p-1", "order_id": "6f1c7c1e-8a38-4f5e-9e0c-3c1f4c1e2b11",
           "amount": 3, "currency": "EUR"}
ALL = {"bad-0", "bad-1", "inv-0", "inv-1", "inv-2", "pay-0"}


def _run(args: list[str], stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603 -- our own CLI
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          stdin=stdin)


async def dlq(config: ConfigDir | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mcp-router dlq ARGS`` for a configuration, stdin not a terminal."""
    path = config.path if isinstance(config, ConfigDir) else config
    command, *rest = args
    result = await asyncio.to_thread(_run, ["dlq", command, "--config", str(path),
                                            "--amqp-url", AMQP_URL, *rest])
    assert "Traceback" not in result.stderr, result.stderr
    return result


async def records(config: ConfigDir, *args: str) -> list[dict[str, Any]]:
    """``dlq list --json`` parsed."""
    result = await dlq(config, "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


async def peek(broker: Broker, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in ``queue``, left there (fetched unacked, returned on close)."""
    channel = await broker.connection.channel()
    try:
        q = await channel.get_queue(queue, ensure=False)
        found = []
        while (message := await q.get(no_ack=False, fail=False)) is not None:
            found.append(message)
        return found
    finally:
        await channel.close()


async def ids_in(broker: Broker, queue: str) -> set[str]:
    return {m.message_id or "" for m in await peek(broker, queue)}


@pytest.fixture
def routers() -> list[Any]:
    """The routers ``shop`` started."""
    return []


@pytest.fixture
async def shop(broker: Broker, config_dir: ConfigDir, start_router: Any,
               routers: list[Any]) -> ConfigDir:
    """A running router and six real dead letters: 2 malformed, 3 schema_invalid, 1 unroutable.

    The topology also has ``<prefix>.replayed`` (bound to ``<prefix>.replayed.q``)
    and ``<prefix>.void`` (bound to nothing) to replay to.
    """
    topology = config_dir.topology
    topology["exchanges"] += [{"name": config_dir.name("replayed"), "type": "topic"},
                              {"name": config_dir.name("void"), "type": "topic"}]
    topology["queues"].append({"name": config_dir.name("replayed.q"), "type": "classic"})
    topology["bindings"].append({"exchange": config_dir.name("replayed"),
                                 "queue": config_dir.name("replayed.q"), "routing_key": "#"})
    config_dir.write(topology)
    routers.append(await start_router(config_dir))
    for i in range(2):
        await broker.publish(config_dir.ingress, b"not json", type="OrderCreated",
                             message_id=f"bad-{i}")
    for i, quantity in enumerate((0, -3, -10)):
        await broker.publish(
            config_dir.ingress, order_created(items=[{"sku": "SKU-1", "quantity": quantity,
                                                      "unit_price": 10.0}]),
            routing_key="order.in", type="OrderCreated", message_id=f"inv-{i}",
            headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})
    await broker.publish(config_dir.ingress, PAYMENT, type="PaymentCaptured",
                         message_id="pay-0")
    await wait_until(lambda: _has(broker, config_dir.dead_queue, 6))
    return config_dir


async def _has(broker: Broker, queue: str, n: int) -> bool:
    return await broker.count(queue) == n


async def test_an_empty_dead_letter_queue_lists_as_a_header(config_dir: ConfigDir) -> None:
    """The first dlq command people run: no letters is a header and a count, not a crash."""
    await apply(config_dir)

    plain = await dlq(config_dir, "list")
    grouped = await dlq(config_dir, "list", "--group")
    as_json = await dlq(config_dir, "list", "--json")

    assert (plain.returncode, grouped.returncode, as_json.returncode) == (0, 0, 0)
    assert plain.stdout.split() == ["TIME", "REASON", "TYPE", "MESSAGE", "ID", "ATTEMPTS",
                                    "ERROR"]
    assert grouped.stdout.split() == ["COUNT", "REASON", "FINGERPRINT", "LAST", "ERROR"]
    assert f"0 of 0 dead letters in {config_dir.dead_queue}" in plain.stderr
    assert json.loads(as_json.stdout) == []


async def test_list_shows_dead_letters_and_removes_nothing(broker: Broker, shop: ConfigDir) -> None:
    """A table of every dead letter; afterwards all of them are still in the queue."""
    result = await dlq(shop, "list")

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0].split()[:3] == ["TIME", "REASON", "TYPE"]
    assert {line.split()[3] for line in lines[1:]} == ALL
    assert "6 of 6 dead letters" in result.stderr
    assert await ids_in(broker, shop.dead_queue) == ALL


async def test_list_filters_by_reason_type_id_time_and_limit(shop: ConfigDir) -> None:
    """Each filter narrows the list; globs work for reason and type."""
    queries = [("--reason", "schema_*", "--type", "Order*"), ("--type", "Pay*"),
               ("--id", "bad-1"), ("--until", "10m"), ()]

    found = [await records(shop, *q) for q in queries]

    ids = [{r["message_id"] for r in result} for result in found]
    assert ids[:4] == [{"inv-0", "inv-1", "inv-2"}, {"pay-0"}, {"bad-1"}, set()]
    assert [r["dead_lettered_at"] for r in found[-1]] == \
        sorted(r["dead_lettered_at"] for r in found[-1])
    assert {r["message_id"] for r in await records(shop, "--since", "10m", "--limit", "2")} \
        == {r["message_id"] for r in found[-1][:2]}
    invalid = next(r for r in found[-1] if r["message_id"] == "inv-0")
    assert invalid["reason"] == "schema_invalid"
    assert invalid["original_exchange"] == shop.ingress
    assert invalid["original_routing_key"] == "order.in"
    assert (invalid["attempts"], invalid["replays"], invalid["trace_id"]) == (1, 0, TRACE_ID)


async def test_group_counts_by_reason_and_error_fingerprint(shop: ConfigDir) -> None:
    """Errors differing only in numbers form one group; --json gives the groups."""
    as_json = await dlq(shop, "list", "--group", "--json")
    as_table = await dlq(shop, "list", "--group")

    groups = json.loads(as_json.stdout)
    assert sorted((g["reason"], g["count"]) for g in groups) == [
        ("malformed", 2), ("schema_invalid", 3), ("unroutable", 1)]
    assert groups[0]["reason"] == "schema_invalid"
    assert "/items/<n>/quantity: minimum: <n> is less than the minimum of <n>" in \
        groups[0]["error"]
    assert groups[0]["types"] == ["OrderCreated"]
    assert as_table.stdout.splitlines()[1].split()[:3] == ["3", "schema_invalid",
                                                          groups[0]["fingerprint"]]


async def test_show_prints_properties_headers_body_and_trace_id(broker: Broker,
                                                                shop: ConfigDir) -> None:
    """One dead letter in full: pretty JSON body, or a safe repr when it is not JSON."""
    invalid = await dlq(shop, "show", "--id", "inv-0")
    garbage = await dlq(shop, "show", "--id", "bad-0")
    missing = await dlq(shop, "show", "--id", "nope")

    assert invalid.returncode == 0, invalid.stderr
    assert "  reason:          schema_invalid" in invalid.stdout
    assert f"  trace id:        {TRACE_ID}" in invalid.stdout
    assert "  message_id: inv-0" in invalid.stdout
    assert "  x-mcp-error: OrderCreated v2: /items/0/quantity" in invalid.stdout
    assert '      "quantity": 0,' in invalid.stdout
    assert garbage.stdout.rstrip().endswith("b'not json'")
    assert missing.returncode == 1
    assert "no dead letter with message id 'nope'" in missing.stderr
    assert await broker.count(shop.dead_queue) == 6


async def test_dry_run_then_replay_to_another_exchange(broker: Broker, shop: ConfigDir,
                                                       tmp_path: Path) -> None:
    """--dry-run runs the pipeline of a fixed configuration; --to sends the message as it was."""
    fixed = tmp_path / "fixed"
    shutil.copytree(shop.path, fixed)
    schema = fixed / "schemas" / "OrderCreated" / "v2.json"
    schema.write_text(schema.read_text().replace('"minimum": 1', '"minimum": 0'))
    [dead] = [m for m in await peek(broker, shop.dead_queue) if m.message_id == "inv-0"]

    as_is = await dlq(shop, "replay", "--dry-run", "--id", "inv-0")
    after_fix = await dlq(fixed, "replay", "--dry-run", "--id", "inv-0")
    assert await broker.count(shop.dead_queue) == 6
    replay = await dlq(shop, "replay", "--id", "inv-0", "--to", shop.name("replayed"), "--yes")
    [copy] = await broker.take(shop.name("replayed.q"), 1)

    assert as_is.stdout.startswith("inv-0 (schema_invalid): would dead-letter: schema_invalid: ")
    assert after_fix.stdout == (f"inv-0 (schema_invalid): would route: order-created -> "
                                f"{shop.name('orders')}/order.created\n")
    assert replay.returncode == 0, replay.stderr
    assert f"replayed 1 of 1 dead letters to exchange '{shop.name('replayed')}'" in replay.stdout
    assert (copy.body, copy.message_id, copy.type) == (dead.body, "inv-0", "OrderCreated")
    assert copy.routing_key == "order.in"
    assert copy.headers["traceparent"] == dead.headers["traceparent"]
    assert copy.headers["x-mcp-replays"] == 1
    assert not [h for h in copy.headers if h.startswith("x-mcp-") and h != "x-mcp-replays"]
    assert await ids_in(broker, shop.dead_queue) == ALL - {"inv-0"}


async def test_replays_that_fail_again_come_back_counted_and_are_taken_once(
        broker: Broker, shop: ConfigDir) -> None:
    """Replayed to the ingress unfixed, each comes back once per run with x-mcp-replays + 1."""
    first = await dlq(shop, "replay", "--reason", "schema_invalid", "--rate", "5", "--yes")
    await wait_until(lambda: _has(broker, shop.dead_queue, 6))
    second = await dlq(shop, "replay", "--reason", "schema_invalid", "--yes")
    await wait_until(lambda: _has(broker, shop.dead_queue, 6))

    found = await peek(broker, shop.dead_queue)
    replays = {m.message_id: m.headers.get("x-mcp-replays") for m in found}
    assert "replayed 3 of 3 dead letters" in first.stdout
    assert "replayed 3 of 3 dead letters" in second.stdout
    assert replays == {"bad-0": None, "bad-1": None, "pay-0": None,
                       "inv-0": 2, "inv-1": 2, "inv-2": 2}
    assert {m.headers["x-mcp-reason"] for m in found if m.message_id.startswith("inv")} == \
        {"schema_invalid"}


async def test_replay_to_the_ingress_after_fixing_the_route(
        broker: Broker, shop: ConfigDir, start_router: Any, routers: list[Any]) -> None:
    """An unroutable message is routed once the configuration has a route for it."""
    topology = shop.topology
    topology["routes"].append({"name": "payments", "message_type": "PaymentCaptured",
                               "to": [{"exchange": shop.name("replayed"),
                                       "routing_key": "payment.captured"}]})
    shop.write(topology)
    for router in routers:
        await router.close()
    await start_router(shop)

    planned = await dlq(shop, "replay", "--reason", "unroutable", "--dry-run")
    replay = await dlq(shop, "replay", "--reason", "unroutable", "--yes")
    [copy] = await broker.take(shop.name("replayed.q"), 1)

    assert planned.stdout == (f"pay-0 (unroutable): would route: payments -> "
                              f"{shop.name('replayed')}/payment.captured\n")
    assert replay.returncode == 0, replay.stderr
    assert (copy.message_id, json.loads(copy.body)) == ("pay-0", PAYMENT)
    assert copy.headers["x-mcp-route"] == "payments"
    assert copy.headers["x-mcp-replays"] == 1
    assert await ids_in(broker, shop.dead_queue) == ALL - {"pay-0"}


async def test_purge_by_filter_leaves_the_others(broker: Broker, shop: ConfigDir) -> None:
    """Only the matching dead letters are deleted, and the command says how many."""
    result = await dlq(shop, "purge", "--reason", "malformed", "--yes")

    assert result.returncode == 0, result.stderr
    assert f"purged 2 dead letters from {shop.dead_queue}" in result.stdout
    assert await ids_in(broker, shop.dead_queue) == ALL - {"bad-0", "bad-1"}


async def test_replay_and_purge_refuse_without_yes_when_stdin_is_not_a_terminal(
        broker: Broker, shop: ConfigDir) -> None:
    """No terminal to ask and no --yes: exit 1 with a clear message, nothing changed."""
    replay, purge = await asyncio.gather(dlq(shop, "replay", "--reason", "malformed"),
                                         dlq(shop, "purge"))

    for result in (replay, purge):
        assert result.returncode == 1
        assert "stdin is not a terminal: add --yes (nothing was changed)" in result.stderr
    assert await ids_in(broker, shop.dead_queue) == ALL


async def test_confirmation_is_asked_on_a_terminal(broker: Broker, shop: ConfigDir) -> None:
    """On a terminal, 'n' changes nothing and 'y' goes ahead."""

    def answer(text: bytes, *args: str) -> subprocess.CompletedProcess[str]:
        primary, secondary = pty.openpty()
        try:
            os.write(primary, text)
            return _run(["dlq", "purge", "--config", str(shop.path), "--amqp-url", AMQP_URL,
                         *args], stdin=secondary)
        finally:
            os.close(primary)
            os.close(secondary)

    declined = await asyncio.to_thread(answer, b"n\n", "--id", "bad-0")
    count_after_no = await broker.count(shop.dead_queue)
    accepted = await asyncio.to_thread(answer, b"y\n", "--id", "bad-0")

    assert "delete 1 dead letter for good? [y/N]" in declined.stderr
    assert declined.returncode == 1
    assert "not confirmed: nothing deleted" in declined.stderr
    assert count_after_no == 6
    assert accepted.returncode == 0, accepted.stderr
    assert await ids_in(broker, shop.dead_queue) == ALL - {"bad-0"}


async def test_a_replay_the_broker_returns_stays_a_dead_letter(broker: Broker,
                                                               shop: ConfigDir) -> None:
    """Unroutable at the target: reported, exit 1, the dead letter is kept."""
    void = await dlq(shop, "replay", "--id", "pay-0", "--to", shop.name("void"), "--yes")
    missing = await dlq(shop, "replay", "--id", "pay-0", "--to", shop.name("absent"), "--yes")

    assert void.returncode == 1
    assert "not replayed pay-0: returned by the broker: 312 NO_ROUTE" in void.stderr
    assert "replayed 0 of 1 dead letters" in void.stdout
    assert missing.returncode == 1
    assert f"exchange '{shop.name('absent')}' does not exist" in missing.stderr
    assert await ids_in(broker, shop.dead_queue) == ALL


async def test_user_errors_are_clear_messages(shop: ConfigDir, tmp_path: Path) -> None:
    """A bad time, a missing queue and a bad --limit: exit non-zero, no traceback."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(shop.path, elsewhere)
    (elsewhere / "topology.yaml").write_text(
        f"dead_letter: {{queue: {shop.name('absent.dead')}}}\n")

    bad_time, no_queue, bad_limit = await asyncio.gather(  # none of them browses shop's DLQ
        dlq(shop, "list", "--since", "last week"), dlq(elsewhere, "list"),
        dlq(shop, "list", "--limit", "0"))

    assert bad_time.returncode == 1
    assert "not a time: 'last week'" in bad_time.stderr
    assert no_queue.returncode == 1
    assert f"queue '{shop.name('absent.dead')}' does not exist on the broker" in no_queue.stderr
    assert bad_limit.returncode == 2
    assert "must be positive" in bad_limit.stderr


async def test_a_message_the_broker_dead_lettered_is_listed_and_replayed(
        broker: Broker, config_dir: ConfigDir, start_router: Any) -> None:
    """The ingress delivery limit's dead letter shows its x-death reason and can be replayed."""
    await apply(config_dir)
    await broker.publish(config_dir.ingress, order_created(), type="OrderCreated",
                         message_id="poison")
    channel = await broker.connection.channel()
    queue = await channel.get_queue(config_dir.ingress_queue, ensure=False)
    while await broker.count(config_dir.dead_queue) == 0:  # delivery_limit is 3
        message = await queue.get(timeout=5, fail=False)
        if message is not None:
            await message.nack(requeue=True)
    await channel.close()

    [record] = await records(config_dir)
    await start_router(config_dir)
    replay = await dlq(config_dir, "replay", "--reason", "delivery_limit", "--yes")
    [copy] = await broker.take(config_dir.name("billing"), 1)

    assert (record["message_id"], record["reason"]) == ("poison", "delivery_limit")
    assert record["dead_lettered_at"] is not None
    assert record["original_exchange"] == config_dir.ingress
    assert "replayed 1 of 1" in replay.stdout
    assert copy.message_id == "poison"
    assert await broker.count(config_dir.dead_queue) == 0


async def _many_dead_letters(broker: Broker, shop: ConfigDir, n: int) -> set[str]:
    ids = {f"many-{i}" for i in range(n)}
    await broker.publish_many(shop.ingress, [(b"nope", {"type": "X", "message_id": i})
                                             for i in sorted(ids)])
    await wait_until(lambda: _has(broker, shop.dead_queue, 6 + n))
    return ids | ALL


def _spawn(shop: ConfigDir, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 -- our own CLI with test arguments
        [sys.executable, "-m", "router", "dlq", "replay", "--config", str(shop.path),
         "--amqp-url", AMQP_URL, "--to", shop.name("replayed"), "--yes", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT)


async def test_a_replay_killed_midway_loses_nothing(broker: Broker, shop: ConfigDir) -> None:
    """kill -9 during a bulk replay: every message is in the DLQ or replayed, at most one twice."""
    everything = await _many_dead_letters(broker, shop, 60)
    proc = _spawn(shop, "--rate", "20")
    try:
        await wait_until(lambda: _at_least(broker, shop.name("replayed.q"), 15), timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    await wait_until(lambda: _total_at_least(broker, shop, 66))

    dead = await ids_in(broker, shop.dead_queue)
    replayed = [m.message_id for m in await broker.drain_all(shop.name("replayed.q"))]

    assert dead | set(replayed) == everything
    assert len(replayed) == len(set(replayed))
    assert len(dead & set(replayed)) <= 1
    assert 15 <= len(replayed) < 66


async def test_ctrl_c_stops_after_the_message_in_hand(broker: Broker, shop: ConfigDir) -> None:
    """SIGINT ends a bulk replay cleanly: it reports exactly what it replayed, no duplicate."""
    everything = await _many_dead_letters(broker, shop, 40)
    proc = _spawn(shop, "--rate", "20")
    try:
        await wait_until(lambda: _at_least(broker, shop.name("replayed.q"), 10), timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    replayed = [m.message_id for m in await broker.drain_all(shop.name("replayed.q"))]
    dead = await ids_in(broker, shop.dead_queue)

    assert proc.returncode == 130, err
    assert f"replayed {len(replayed)} of 46 dead letters" in out
    assert "interrupted: the rest stay in the dead-letter queue" in err
    assert dead | set(replayed) == everything
    assert not dead & set(replayed)


async def _at_least(broker: Broker, queue: str, n: int) -> bool:
    return await broker.count(queue) >= n


async def _total_at_least(broker: Broker, shop: ConfigDir, n: int) -> bool:
    return await broker.count(shop.dead_queue) + \
        await broker.count(shop.name("replayed.q")) >= n


async def _settled_count(broker: Broker, queue: str) -> int:
    """Ready messages in ``queue`` once no consumer holds any: a closed channel's
    unacked messages are back only once the queue dropped its consumer (bounded wait)."""
    counts = (0, 0)

    async def settled() -> bool:
        nonlocal counts
        channel = await broker.connection.channel()
        try:
            result = (await channel.declare_queue(queue, passive=True)).declaration_result
            counts = (int(result.message_count or 0), int(result.consumer_count or 0))
        finally:
            await channel.close()
        return counts[1] == 0

    await wait_until(settled, timeout=10)
    return counts[0]


async def test_every_dead_letter_acked_is_gone_once_the_channel_closed(
        broker: Broker, config_dir: ConfigDir) -> None:
    """Hundreds of dead letters acked at once, then the channel closed: none comes back.
    A quorum queue's channel that is 32 commands behind keeps later acks to itself and
    drops them when it closes (RabbitMQ #10327); ``open_held`` waits until the queue has
    them (``dlq purge``, ``dlq replay`` and the console all ack through it).  Whether the
    channel falls behind depends on the broker's pace, so five rounds."""
    await apply(config_dir)
    n, came_back = 300, []
    for _ in range(5):
        await broker.publish_many(config_dir.topology["dead_letter"]["exchange"],
                                  [(b"{}", {"type": "OrderCreated", "message_id": f"d-{i}"})
                                   for i in range(n)], routing_key="order.created")
        async with open_held(broker.connection, config_dir.dead_queue) as held:
            fetched = [await held.get() for _ in range(n)]
            await asyncio.gather(*(held.ack(f.tag) for f in fetched if f is not None))
        came_back.append(await _settled_count(broker, config_dir.dead_queue))
        await broker.drain(config_dir.dead_queue, idle=0.2)  # the next round starts empty

    assert held.acked == n
    assert came_back == [0] * 5


async def test_a_purge_of_hundreds_leaves_none_behind(broker: Broker,
                                                      config_dir: ConfigDir) -> None:
    """Every dead letter the purge says it deleted is gone for good: a quorum queue's
    channel that is behind keeps its last acks to itself and drops them when it closes
    (RabbitMQ #10327), so the purge makes sure the queue has them before closing."""
    await apply(config_dir)
    n = 600
    await broker.publish_many(config_dir.topology["dead_letter"]["exchange"],
                              [(b"{}", {"type": "OrderCreated", "message_id": f"dead-{i}"})
                               for i in range(n)], routing_key="order.created")
    assert await broker.count(config_dir.dead_queue) == n

    result = await dlq(config_dir, "purge", "--yes")

    assert result.returncode == 0, result.stderr
    assert f"purged {n} dead letters from {config_dir.dead_queue}" in result.stdout
    assert await _settled_count(broker, config_dir.dead_queue) == 0
