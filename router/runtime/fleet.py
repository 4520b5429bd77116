"""What ``mcp-router run --workers N`` serves over HTTP: the fleet's metrics and readiness.

Pure functions over what the workers answered, so any HTTP server can serve
them (``router.runtime.http.HealthServer`` today): ``merge_metrics`` joins the
workers' Prometheus expositions into one, each sample labelled with its
``worker``, every family's ``# HELP``/``# TYPE`` once and its samples together
(as the text format requires); ``fleet_readiness`` is ready only when every
worker is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Fleet", "WorkerView", "fleet_readiness", "merge_metrics", "parse_readiness",
           "supervisor_metrics"]


@dataclass
class WorkerView:
    """The supervisor's latest look at one worker."""

    index: int
    pid: int | None = None
    restarts: int = 0
    ready: bool = False
    detail: dict[str, object] = field(default_factory=dict)
    metrics: bytes = b""


class Fleet(Protocol):
    """The interface an HTTP server needs to serve a supervised fleet."""

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """``/readyz``: ready when every worker is; the detail names each."""

    def exposition(self) -> bytes:
        """``/metrics``: every worker's samples, labelled ``worker``."""


def _family(name: str) -> str:
    """The family a sample belongs to (histogram and counter suffixes stripped)."""
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def _labelled(line: str, worker: int) -> str:
    name_end = len(line) - len(line.lstrip("abcdefghijklmnopqrstuvwxyz"
                                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:"))
    name, rest = line[:name_end], line[name_end:]
    if rest.startswith("{}"):
        rest = rest[2:]
    if rest.startswith("{"):
        return f'{name}{{worker="{worker}",{rest[1:]}'
    return f'{name}{{worker="{worker}"}}{rest}'


def merge_metrics(expositions: Sequence[tuple[int, bytes]], extra: str = "") -> bytes:
    """One exposition from ``(worker, text)`` pairs, followed by ``extra`` (the supervisor's)."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in expositions:
        family = ""
        for line in text.decode("utf-8", "replace").splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    seen = heads.setdefault(family, [])
                    if line not in seen:
                        seen.append(line)
                    samples.setdefault(family, [])
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            owner = family if family and _family(name) in (family, _family(family)) \
                else _family(name)
            samples.setdefault(owner, []).append(_labelled(line, worker))
            heads.setdefault(owner, [])
    lines: list[str] = []
    for family, head in heads.items():
        lines.extend(head)
        lines.extend(samples.get(family, []))
    return ("\n".join(lines) + ("\n" if lines else "") + extra).encode()


def fleet_readiness(workers: Sequence[WorkerView]) -> tuple[bool, dict[str, object]]:
    """Ready when every worker is ready; the detail lists each worker's own."""
    ready = bool(workers) and all(w.ready for w in workers)
    return ready, {"workers": [{"worker": w.index, "pid": w.pid, "ready": w.ready,
                                "restarts": w.restarts, **w.detail} for w in workers]}


def supervisor_metrics(workers: Sequence[WorkerView]) -> str:
    """The supervisor's own series: workers up and restarts."""
    lines = ["# HELP mcp_router_worker_up Whether a routing worker answers and is ready",
             "# TYPE mcp_router_worker_up gauge"]
    lines += [f'mcp_router_worker_up{{worker="{w.index}"}} {1 if w.ready else 0}'
              for w in workers]
    lines += ["# HELP mcp_router_worker_restarts_total Routing workers restarted after exiting",
              "# TYPE mcp_router_worker_restarts_total counter"]
    lines += [f'mcp_router_worker_restarts_total{{worker="{w.index}"}} {w.restarts}'
              for w in workers]
    return "\n".join(lines) + "\n"


def parse_readiness(status: int, body: bytes) -> tuple[bool, dict[str, object]]:
    """A worker's ``/readyz`` answer as (ready, detail)."""
    try:
        detail = json.loads(body)
    except ValueError:
        detail = {}
    if not isinstance(detail, dict):
        detail = {}
    detail.pop("ready", None)
    return status == 200, detail
