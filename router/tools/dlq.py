"""``mcp-router dlq``: list, show, replay and purge dead letters, losing none.

A dead letter is acked (removed) only once what was meant to happen to it
has happened:

* one dedicated channel fetches with ``basic.get`` *without* ack, at most as
  many messages as the queue held at the start, and leaves alone letters
  dead-lettered after the command started, so a replay that fails again and
  comes back during the run is never taken a second time;
* a replay is published ``mandatory`` on a confirming channel of a second
  connection (a memory alarm blocks publishing connections, STYLE.md); its
  dead letter is acked only after the broker confirmed it.  A returned or
  nacked replay leaves the dead letter where it is;
* everything not acked returns to the queue when the channel closes, which
  the broker does too when the process dies (``kill -9`` included).  An
  interruption can at worst leave one message both replayed and still here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from router.broker.amqp import Connection, close_quietly, connect
from router.broker.deadletterqueue import HeldQueue, Replayer, exchange_exists, open_held
from router.config.configuration import Config
from router.core.counts import plural
from router.core.sealing import decide_inbound
from router.errors import BrokerFailure, DeliveryFailed, NotFound, Unroutable
from router.tools.letters import (
    Filter,
    Letter,
    group,
    make_filter,
    read_letter,
    replay_envelope,
    replay_properties,
    replay_target,
)
from router.tools.lettertext import (
    clean,
    group_record,
    group_table,
    letter_record,
    letter_table,
    outcome_text,
    show_lines,
)
from router.tools.terminal import Progress, confirm, emit, fail, stdin_is_terminal, stop_on_signals

__all__ = ["CONFIRM_TIMEOUT", "DeadLetterQueue", "Held", "Replayer", "open_queue", "replay_one",
           "run_dlq"]

CONFIRM_TIMEOUT = 10.0  # seconds to wait for the broker to confirm one replay
_NEVER = datetime.max.replace(tzinfo=UTC)  # sorts letters without a time last


@dataclass(frozen=True, slots=True)
class Held:
    """A fetched, unacked dead letter: it stays in the queue unless acked."""

    tag: int
    letter: Letter


@dataclass
class DeadLetterQueue:
    """The dead-letter queue on a channel of its own; what it fetched stays unacked until
    ``ack`` (``router.broker.deadletterqueue``)."""

    queue: HeldQueue
    name: str
    count: int  # ready messages when the channel was opened

    async def fetch(self, keep: Callable[[Letter], bool], limit: int | None = None) -> list[Held]:
        """The kept letters among the first ``count`` messages, oldest first, at most ``limit``.

        Queue order is not time order: quorum queues put returned (browsed)
        messages back ahead of the others.
        """
        held: list[Held] = []
        for _ in range(self.count):
            fetched = await self.queue.get()
            if fetched is None:
                break  # empty: someone else took the rest
            letter = read_letter(fetched.envelope)
            if keep(letter):
                held.append(Held(fetched.tag, letter))
        held.sort(key=lambda h: h.letter.dead_lettered_at or _NEVER)
        return held[:limit]

    async def ack(self, held: Held) -> None:
        """Remove ``held`` from the queue."""
        await self.queue.ack(held.tag)


@contextlib.asynccontextmanager
async def open_queue(connection: Connection, name: str) -> AsyncIterator[DeadLetterQueue]:
    """A dedicated channel on ``name``; closing it returns every message not acked."""
    async with open_held(connection, name) as queue:
        yield DeadLetterQueue(queue, name, queue.count)


async def replay_one(dlq: DeadLetterQueue, replayer: Replayer, held: Held, exchange: str,
                     routing_key: str) -> DeliveryFailed | None:
    """Replay ``held``; its dead letter is acked once the broker confirmed the replay.

    On failure (returned, nacked, timed out) the dead letter stays and the
    failure is returned: ``Unroutable`` concerns this message only, anything
    else means the broker is in trouble.
    """
    try:
        await replayer.publish(held.letter.envelope.body, replay_properties(held.letter),
                               exchange, routing_key)
    except DeliveryFailed as exc:
        return exc
    await dlq.ack(held)
    return None


async def _list(args: argparse.Namespace, dlq: DeadLetterQueue, flt: Filter) -> int:
    letters = [h.letter for h in await dlq.fetch(flt.matches, args.limit)]
    if args.group:
        groups = group(letters)
        lines = [json.dumps([group_record(g) for g in groups], indent=2)] if args.json \
            else group_table(groups)
    else:
        lines = [json.dumps([letter_record(x) for x in letters], indent=2)] if args.json \
            else letter_table(letters)
    emit(lines)
    if not args.json:
        print(f"{len(letters)} of {dlq.count} dead letters in {clean(dlq.name)}",  # "1 of 1 ..."
              file=sys.stderr)
    return 0


async def _show(args: argparse.Namespace, dlq: DeadLetterQueue) -> int:
    held = await dlq.fetch(lambda x: x.message_id == args.message_id)
    if not held:
        return fail(f"no dead letter with message id {clean(args.message_id)!r} "
                    f"in {clean(dlq.name)}")
    emit(["\n\n".join("\n".join(show_lines(h.letter)) for h in held)])
    return 0


def _dry_run(args: argparse.Namespace, config: Config, plan: list[tuple[Held, str, str]]) -> int:
    lines = []
    for h, exchange, key in plan:
        what = f"would publish to {exchange!r} with routing key {key!r}" if args.to is not None \
            else outcome_text(decide_inbound(replay_envelope(h.letter, exchange, key), config)[0])
        lines.append(f"{clean(h.letter.message_id or '-')} ({clean(h.letter.reason)}): "
                     f"{clean(what)}")
    emit(lines)
    print(f"dry run: {plural(len(plan), 'dead letter')}, nothing changed", file=sys.stderr)
    return 0


async def _replay(args: argparse.Namespace, config: Config, dlq: DeadLetterQueue,
                  held: list[Held]) -> int:
    ingress = config.topology.ingress.exchange
    plan = [(h, *replay_target(h.letter, ingress=ingress, to=args.to,
                               routing_key=args.routing_key)) for h in held]
    if args.dry_run:
        return _dry_run(args, config, plan)
    where = f"exchange {clean(args.to or ingress)!r}"
    if not args.yes and not await confirm(f"replay {plural(len(held), 'dead letter')} to {where}?"):
        return fail("not confirmed: nothing replayed")
    replayer = Replayer(await connect(args.amqp_url, "mcp-router dlq replay (publish)"),
                        CONFIRM_TIMEOUT)
    loop, stop, done, failed = asyncio.get_running_loop(), asyncio.Event(), 0, 0
    progress, start = Progress("replay", len(held)), loop.time()
    try:
        with stop_on_signals(stop):
            for i, (h, exchange, key) in enumerate(plan):
                with contextlib.suppress(TimeoutError):  # --rate, cut short by Ctrl-C
                    await asyncio.wait_for(stop.wait(), start + i / args.rate - loop.time())
                if stop.is_set():
                    break
                if (exc := await replay_one(dlq, replayer, h, exchange, key)) is not None:
                    failed += 1
                    progress.note(f"not replayed {clean(h.letter.message_id or '-')}: "
                                  f"{clean(str(exc))}; it stays in the dead-letter queue")
                    if not isinstance(exc, Unroutable):
                        break  # nacked or timed out: the broker is in trouble, stop here
                else:
                    done += 1
                progress.update(done + failed)
    finally:
        progress.close()
        await replayer.close()
    print(f"replayed {done} of {len(held)} dead letters to {where}")
    if stop.is_set():
        print("interrupted: the rest stay in the dead-letter queue", file=sys.stderr)
        return 130
    return 0 if done == len(held) else 1


async def _purge(args: argparse.Namespace, dlq: DeadLetterQueue, held: list[Held]) -> int:
    if not args.yes and not await confirm(f"delete {plural(len(held), 'dead letter')} for good?"):
        return fail("not confirmed: nothing deleted")
    stop, done = asyncio.Event(), 0
    with stop_on_signals(stop):
        for h in held:
            if stop.is_set():
                break
            await dlq.ack(h)
            done += 1
    print(f"purged {plural(done, 'dead letter')} from {clean(dlq.name)}")
    return 130 if stop.is_set() else 0


async def _command(args: argparse.Namespace, config: Config, connection: Connection,
                   flt: Filter, now: datetime) -> int:
    queue = config.topology.dead_letter.queue
    if args.dlq_command == "replay":
        target = args.to if args.to is not None else config.topology.ingress.exchange
        if not await exchange_exists(connection, target):
            return fail(f"exchange {clean(target)!r} does not exist on the broker")
    try:
        async with open_queue(connection, queue) as dlq:
            if args.dlq_command == "list":
                return await _list(args, dlq, flt)
            if args.dlq_command == "show":
                return await _show(args, dlq)
            # Only what was dead-lettered before we started: a replay that fails
            # again and comes back during the run must not be taken again.
            held = await dlq.fetch(lambda x: flt.matches(x) and (
                x.dead_lettered_at is None or x.dead_lettered_at <= now), args.limit)
            if not held:
                print(f"no matching dead letters in {clean(queue)}", file=sys.stderr)
                return 0
            if args.dlq_command == "replay":
                return await _replay(args, config, dlq, held)
            return await _purge(args, dlq, held)
    except NotFound:
        return fail(f"queue {clean(queue)!r} does not exist on the broker "
                    "(mcp-router apply declares it)")


async def run_dlq(args: argparse.Namespace, config: Config, now: datetime) -> int:
    """One ``dlq`` subcommand; every failure a user can cause is a message and exit 1."""
    if isinstance(sys.stdout, io.TextIOWrapper):  # a body may hold what the locale cannot
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        flt = make_filter(now=now, **{k: getattr(args, k, None) for k in (
            "reason", "message_type", "message_id", "since", "until")})
    except ValueError as exc:
        return fail(str(exc))
    acting = args.dlq_command == "purge" or (args.dlq_command == "replay" and not args.dry_run)
    if acting and not args.yes and not stdin_is_terminal():
        return fail(f"dlq {args.dlq_command} asks for confirmation, but stdin is not a "
                    "terminal: add --yes (nothing was changed)")
    connection = await connect(args.amqp_url, f"mcp-router dlq {args.dlq_command}")
    try:
        return await _command(args, config, connection, flt, now)
    except BrokerFailure as exc:
        return fail(f"the broker stopped the command: {exc}; dead letters not "
                    f"yet handled stay in {clean(config.topology.dead_letter.queue)}")
    finally:
        await close_quietly(connection)
