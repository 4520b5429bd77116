"""``mcp-router run --workers N`` drained from outside, and how busy the broker is meanwhile.

The router runs as the CLI runs it (a supervisor and N worker processes).
The rate is the steady one: between 10 % and 90 % of the backlog arriving at
the destination, so process start-up is not counted.  The broker's CPU
(``beam.smp``, when it runs on this machine) over the same window says where
it saturates: near the machine's cores, more workers cannot help.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")

__all__ = ["ScalingResult", "broker_cpu_seconds", "listener_pid", "process_tree",
           "run_workers"]


@dataclass
class ScalingResult:
    workers: int
    rate: float
    broker_cores: float | None  # CPU cores the broker used while draining
    router_cores: float | None


def _pids(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its waited-for children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICKS  # utime stime cutime cstime


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (the broker), if visible."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in _pids("beam.smp"):
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
    return None


def broker_cpu_seconds(pid: int | None) -> float | None:
    return None if pid is None else _cpu_seconds(pid)


async def run_workers(url: str, config: Path, workers: int, count: int,
                      depth: Callable[[], Awaitable[int]]) -> ScalingResult:
    """Start the CLI with ``--workers``, time the backlog's middle 80 %, stop it."""
    broker = listener_pid(urlsplit(url).port or 5672)
    env = {**os.environ, "MCP_AMQP_URL": url, "MCP_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "run", "--config", str(config), "--watch", "0",
        "--workers", str(workers), env=env, cwd=ROOT)
    try:
        low, high = count // 10, count - count // 10
        while await depth() < low:
            await asyncio.sleep(0.02)
        began, broker0 = time.perf_counter(), broker_cpu_seconds(broker)
        tree = process_tree(proc.pid)
        router0 = sum(_cpu_seconds(p) for p in tree)
        while await depth() < high:
            await asyncio.sleep(0.02)
        took = time.perf_counter() - began
        broker1 = broker_cpu_seconds(broker)
        router1 = sum(_cpu_seconds(p) for p in tree)
        while await depth() < count:
            await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 60)
    cores = None if broker0 is None or broker1 is None else (broker1 - broker0) / took
    return ScalingResult(workers, (high - low) / took, cores, (router1 - router0) / took)

