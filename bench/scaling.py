"""``mcp-router run --workers N`` drained from outside, and which part is the limit.

The router runs as the CLI runs it (a supervisor and N worker processes).
The rate is the steady one: between 10 % and 90 % of the backlog arriving at
the destination, so process start-up is not counted.  Over the same window
the CPU of the routers (the supervisor's process tree), of the broker
(``beam.smp`` listening on the URL's port, when it runs on this machine) and
of the whole machine (``/proc/stat``; the rest is other processes and the
hypervisor's steal) say which part held the rate back (``bound``, ``limit``):

* **the broker**, when ``beam.smp`` used (nearly) all the CPU left to it, the
  machine's cores less the routers' and everything else's: the broker is
  saturated, and more workers cannot help, they only take cores from it;
* **the router**, when each worker used (nearly) a whole core: a worker is one
  Python thread, so more workers (and free cores) would help;
* **both**, when the broker is saturated and each worker is at a core;
* **other processes**, when the cores were full but a quarter of a core or
  more went to other processes: the broker and the routers then share what is
  left by the scheduler's rules, and the run cannot tell where the broker
  would saturate on its own;
* **neither**, when both had room: round trips (confirms, quorum writes) set
  the pace.

The broker is shared: its CPU includes other users' work on it.
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

__all__ = ["ScalingResult", "bound", "broker_cpu_seconds", "cpu_seconds", "limit", "listener_pid",
           "process_tree", "run_workers", "saturation"]

SATURATED = 0.9  # of the CPU available: a part using this much is the limit
OTHERS = 0.25  # cores: other processes using this much make a full machine "shared"


@dataclass
class ScalingResult:
    workers: int
    rate: float
    broker_cores: float | None  # CPU cores the broker used while draining
    router_cores: float  # the supervisor and its workers
    machine_cores: float  # busy cores of the whole machine meanwhile
    cpus: int = os.cpu_count() or 1


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


def cpu_seconds(pid: int) -> float:
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
    return None if pid is None else cpu_seconds(pid)


def machine_busy_seconds() -> float:
    """CPU seconds the machine spent on anything but idle and I/O wait, all cores together."""
    values = [int(x) for x in Path("/proc/stat").read_text().split(maxsplit=11)[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / TICKS


def bound(s: ScalingResult) -> str:
    """Which part was the limit: ``broker``, ``router``, ``both``, ``shared`` (the cores full,
    much of them with other processes), ``neither`` or ``unknown`` (see the docstring)."""
    router = s.router_cores / s.workers >= SATURATED
    if s.broker_cores is None:
        return "router" if router else "unknown"
    if s.broker_cores < SATURATED * _left_to_broker(s):  # the broker had room
        return "router" if router else "neither"
    if _others(s) >= OTHERS:
        return "shared"
    return "both" if router else "broker"


def _others(s: ScalingResult) -> float:
    return max(s.machine_cores - (s.broker_cores or 0.0) - s.router_cores, 0.0)


def _left_to_broker(s: ScalingResult) -> float:
    return max(s.cpus - s.router_cores - _others(s), 0.0)


def limit(s: ScalingResult) -> str:
    """Which part held the rate back, in words, with the CPU each used."""
    worker = f"each worker {s.router_cores / s.workers:.2f} of its one core"
    if s.broker_cores is None:
        return (f"limit: the router ({worker}); the broker's CPU is not visible from here"
                if bound(s) == "router" else "limit: unknown, the broker's CPU is not visible")
    broker = (f"beam.smp {s.broker_cores:.2f} of the {_left_to_broker(s):.2f} cores left to "
              f"it ({s.cpus} less the routers' {s.router_cores:.2f} and {_others(s):.2f} "
              "for other processes)")
    return {
        "both": f"limit: both, the cores are full: {broker}; {worker}",
        "broker": f"limit: the broker, saturated: {broker}; {worker}",
        "router": f"limit: the router, {worker}; {broker}",
        "shared": f"limit: other processes, the cores are full and {_others(s):.2f} of them "
                  f"went elsewhere: {broker}; {worker}",
        "neither": f"limit: neither CPU, round trips set the pace: {broker}; {worker}; "
                   f"{s.cpus - s.machine_cores:.2f} cores idle",
    }[bound(s)]


def saturation(results: list[ScalingResult]) -> str:
    """Where the broker saturates along ``results`` (workers ascending), in words."""
    bounds = [bound(s) for s in results]
    at = [s.workers for s, b in zip(results, bounds, strict=True) if b in {"broker", "both"}]
    if at:
        n = at[0]
        already = "already " if n == results[0].workers else ""
        return (f"the broker saturates {already}at {n} worker{'s' if n > 1 else ''}: "
                "more workers cannot help")
    if "shared" in bounds or "unknown" in bounds:
        return ("where the broker saturates cannot be told from this run: "
                + ("other processes filled the cores" if "shared" in bounds
                   else "its CPU is not visible from here"))
    last = results[-1].workers
    return (f"the broker did not saturate up to {last} worker{'s' if last > 1 else ''}; "
            f"at {last}, {limit(results[-1])}")


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
        router0, machine0 = sum(cpu_seconds(p) for p in tree), machine_busy_seconds()
        while await depth() < high:
            await asyncio.sleep(0.02)
        took = time.perf_counter() - began
        broker1, machine1 = broker_cpu_seconds(broker), machine_busy_seconds()
        router1 = sum(cpu_seconds(p) for p in tree)
        while await depth() < count:
            await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 60)
    cores = None if broker0 is None or broker1 is None else (broker1 - broker0) / took
    return ScalingResult(workers, (high - low) / took, cores, (router1 - router0) / took,
                         (machine1 - machine0) / took)

