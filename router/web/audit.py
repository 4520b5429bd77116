"""Who did what: replays, edits, purges and reloads, one JSON line each in a file.

The file is appended to and flushed to disk before the action's answer goes
out, so the log survives restarts and crashes; the console shows its tail.
Several processes (router and ``mcp-router console``) may share one file:
each line is written with a single ``write`` on a file opened for appending.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["MAX_LISTED", "AuditEntry", "AuditLog"]

MAX_LISTED = 1000  # message ids kept per entry; the count is always exact
TAIL_BYTES = 1 << 20  # how much of the file's end ``recent`` reads


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One action: when, by whom, what, on how many letters, which ones."""

    at: str
    who: str
    action: str  # replay | edit | purge | reload
    count: int
    letters: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, now: datetime, who: str, action: str, letters: Sequence[str],
           count: int | None = None, **detail: Any) -> AuditEntry:
        at = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return cls(at, who, action, len(letters) if count is None else count,
                   tuple(letters[:MAX_LISTED]), detail)

    @classmethod
    def parse(cls, line: str) -> AuditEntry | None:
        """An entry from one line of the file; None for a line that is not one."""
        try:
            raw = json.loads(line)
            return cls(str(raw["at"]), str(raw["who"]), str(raw["action"]), int(raw["count"]),
                       tuple(str(x) for x in raw.get("letters", ())),
                       dict(raw.get("detail") or {}))
        except (ValueError, KeyError, TypeError):
            return None


class AuditLog:
    """The audit file; blocking I/O (call it in a thread from async code)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, entry: AuditEntry) -> None:
        """Append ``entry`` and make it durable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), ensure_ascii=False, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "surrogatepass"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def recent(self, limit: int = 200) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(size - TAIL_BYTES, 0))
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        lines = text.splitlines()[1 if size > TAIL_BYTES else 0:]  # the first may be cut
        entries = [e for e in map(AuditEntry.parse, lines) if e is not None]
        return entries[::-1][:limit]
