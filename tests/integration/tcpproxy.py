"""A TCP proxy the test controls, between a router and a broker node.

``blackhole()`` stops forwarding in both directions (the sockets stay open, as
when a switch drops packets); ``latency`` delays every chunk; ``sever()``
freezes every connection open now for good (half-open: neither side hears a
FIN, only missing heartbeats tell), while new connections pass normally.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pair:
    frozen: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class TcpProxy:
    """Listens on 127.0.0.1 and forwards each connection to ``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.latency = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self, on: bool = True) -> None:
        """Stop (or resume) forwarding every byte, without closing anything."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def sever(self) -> None:
        """Freeze every current connection for good; later ones pass."""
        for pair in self._pairs:
            pair.frozen = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        pair = _Pair(writers=[writer, up_writer])
        self._pairs.add(pair)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(pair, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, pair: _Pair, source: asyncio.StreamReader,
                    sink: asyncio.StreamWriter) -> None:
        try:
            while chunk := await source.read(65536):
                await self._flowing.wait()
                if self.latency:
                    await asyncio.sleep(self.latency)
                if pair.frozen:
                    continue  # swallowed: the peer never learns
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not pair.frozen:
                for w in pair.writers:
                    w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self._pairs:
            for w in pair.writers:
                w.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
