"""The terminal side of CLI commands: output, confirmation, progress, Ctrl-C.

All of it keeps the event loop running, so AMQP heartbeats go on while a
person reads a prompt, and a channel holding unacked messages stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from router.config.configuration import Config, load_config
from router.core.counts import plural
from router.errors import ConfigError
from router.tools.lettertext import progress_bar

__all__ = ["Progress", "confirm", "emit", "fail", "load_or_fail", "stdin_is_terminal",
           "stop_on_signals"]


def fail(message: str) -> int:
    """Say what went wrong on stderr; the exit status of a failure a user caused."""
    print(f"mcp-router: {message}", file=sys.stderr)
    return 1


def load_or_fail(directory: Path) -> Config | int:
    """The configuration in ``directory``, or its problems on stderr and the exit status 1."""
    try:
        return load_config(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return fail(f"{plural(len(exc.problems), 'problem')} in {directory}")


def emit(lines: list[str]) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def stdin_is_terminal() -> bool:
    """Whether a person can answer a prompt."""
    return sys.stdin is not None and sys.stdin.isatty()


async def confirm(question: str) -> bool:
    """Ask ``question [y/N]`` on stderr and read the answer from the terminal."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    line: asyncio.Future[bytes] = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not line.done():
            line.set_result(os.read(fd, 1024))

    loop.add_reader(fd, readable)
    try:
        answer = await line
    finally:
        loop.remove_reader(fd)
    return answer.decode(errors="replace").strip().lower() in ("y", "yes")


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (finish the item in hand); a second one acts at once."""
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        stop.set()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class Progress:
    """``replay [#####.....] 5/10`` on stderr: redrawn on a terminal, a few lines otherwise.

    Silent for a single item.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.redraw = self.stream.isatty() and total > 1
        self.quarter = 0

    def update(self, done: int) -> None:
        if self.total <= 1:
            return
        if self.redraw:
            self.stream.write("\r" + progress_bar(self.label, done, self.total))
            self.stream.flush()
        elif done * 4 // self.total > self.quarter or done == self.total:
            self.quarter = done * 4 // self.total
            print(progress_bar(self.label, done, self.total), file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line of its own, even in the middle of a redrawn bar."""
        print(("\n" if self.redraw else "") + text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.redraw:
            print(file=self.stream, flush=True)
