"""A low-level AMQP 0-9-1 publisher for hostile input: hand-built content-header frames.

Ordinary clients refuse to encode what a hostile publisher can send (a 2^63
timestamp, a key that is not UTF-8, a table 600 deep); this one writes the
content header's property bytes exactly as given.  Method frames are marshalled
with pamqp, the frames the broker sends are read with it; nothing else.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pamqp.frame
from pamqp import commands, heartbeat

__all__ = ["Field", "RawPublisher", "field_table", "properties"]

_FLAGS = commands.Basic.Properties.flags
_ORDER = commands.Basic.Properties.__slots__


@dataclass(frozen=True)
class Field:
    """One property value as raw bytes, already encoded (length prefix included)."""

    raw: bytes


def shortstr(raw: bytes) -> bytes:
    """An AMQP short string of ``raw`` (at most 255 bytes, any bytes)."""
    return bytes([len(raw)]) + raw


def longstr(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def field_table(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A field table of (raw key, tagged raw value) entries, exactly as given."""
    payload = b"".join(shortstr(key) + value for key, value in entries)
    return struct.pack(">I", len(payload)) + payload


def properties(fields: dict[str, bytes]) -> bytes:
    """The property bytes of a content header: flags, then each field's raw bytes in order."""
    flags = 0
    parts = []
    for name in _ORDER:
        if name in fields:
            flags |= _FLAGS[name]
            parts.append(fields[name])
    return struct.pack(">H", flags) + b"".join(parts)


def _frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


class RawPublisher:
    """One connection, one confirming channel; ``publish`` returns the broker's verdict."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._channel = 0
        self._frame_max = 131072

    @classmethod
    async def open(cls, url: str) -> RawPublisher:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname or "localhost",
                                                       parts.port or 5672)
        client = cls(reader, writer)
        writer.write(b"AMQP\x00\x00\x09\x01")
        await client._expect(commands.Connection.Start)
        user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
        client._send(0, commands.Connection.StartOk(
            client_properties={"connection_name": "raw hostile publisher"},
            response=f"\0{user}\0{password}"))
        tune = await client._expect(commands.Connection.Tune)
        client._frame_max = tune.frame_max or client._frame_max
        client._send(0, commands.Connection.TuneOk(tune.channel_max, client._frame_max, 0))
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        client._send(0, commands.Connection.Open(vhost))
        await client._expect(commands.Connection.OpenOk)
        await client._open_channel()
        return client

    async def _open_channel(self) -> None:
        self._channel += 1
        self._send(self._channel, commands.Channel.Open())
        await self._expect(commands.Channel.OpenOk)
        self._send(self._channel, commands.Confirm.Select())
        await self._expect(commands.Confirm.SelectOk)

    def _send(self, channel: int, method: object) -> None:
        self._writer.write(pamqp.frame.marshal(method, channel))  # type: ignore[arg-type]

    async def _read(self) -> tuple[int, object]:
        head = await self._reader.readexactly(7)
        _, channel, size = struct.unpack(">BHI", head)
        rest = await self._reader.readexactly(size + 1)
        _, _, frame = pamqp.frame.unmarshal(head + rest)
        return channel, frame

    async def _expect(self, kind: type) -> object:
        while True:
            _, frame = await self._read()
            if isinstance(frame, kind):
                return frame
            if isinstance(frame, commands.Connection.Close):
                raise ConnectionError(f"broker closed the connection: {frame.reply_text}")
            if not isinstance(frame, heartbeat.Heartbeat):
                raise AssertionError(f"unexpected {frame!r} waiting for {kind.__name__}")

    async def publish(self, exchange: str, routing_key: str | bytes, props: bytes,
                      body: bytes) -> str:
        """Publish once: ``"ack"``, ``"nack"``, or why the broker closed the channel.

        A ``bytes`` routing key is sent as it is (it need not be UTF-8)."""
        channel = self._channel
        payload = struct.pack(">HHQ", 60, 0, len(body)) + props
        key = routing_key if isinstance(routing_key, bytes) else routing_key.encode()
        method = struct.pack(">HHH", 60, 40, 0) + shortstr(exchange.encode()) + shortstr(key) \
            + b"\x00"
        frames = [_frame(1, channel, method), _frame(2, channel, payload)]
        step = self._frame_max - 8
        frames += [_frame(3, channel, body[i:i + step]) for i in range(0, len(body), step)]
        self._writer.write(b"".join(frames))
        while True:
            _, frame = await self._read()
            if isinstance(frame, commands.Basic.Ack):
                return "ack"
            if isinstance(frame, commands.Basic.Nack):
                return "nack"
            if isinstance(frame, commands.Channel.Close):
                self._send(channel, commands.Channel.CloseOk())
                await self._open_channel()
                return f"channel closed: {frame.reply_code} {frame.reply_text}"
            if isinstance(frame, commands.Connection.Close):
                self._send(0, commands.Connection.CloseOk())
                self._writer.close()
                raise ConnectionError(f"broker closed the connection: {frame.reply_code} "
                                      f"{frame.reply_text}")

    def abort(self) -> None:
        """Drop the connection without the closing handshake (the broker closed it)."""
        self._writer.close()

    async def close(self) -> None:
        try:
            self._send(0, commands.Connection.Close(200, "bye", 0, 0))
            await asyncio.wait_for(self._expect(commands.Connection.CloseOk), 5)
        except (ConnectionError, OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writer.close()
