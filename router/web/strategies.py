"""The flow page's strategies: each route's alternatives and shadows, configured and live (pure).

``strategy_rows`` joins what ``topology.yaml`` configures (the strategy, each
branch's share) with what a router counted: its ``LoadBoard.snapshot()``
(copies, the share actually taken, skips by reason) and its shadow copies by
result.  A console without a router has neither and shows the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.config.branches import SHARE_TOTAL, Branch
from router.config.topology import RouteSpec, Topology

__all__ = ["SHADOW_RESULTS", "BranchCounts", "ShadowCounts", "strategy_rows"]

SHADOW_RESULTS = ("delivered", "failed", "dropped")

# route -> branch -> {"copies", "share", "skips", ...} (router.runtime.loads.LoadBoard.snapshot)
BranchCounts = Mapping[str, Mapping[str, Mapping[str, object]]]
# route -> branch -> result -> copies (router.observe.metrics.Metrics.shadows)
ShadowCounts = Mapping[str, Mapping[str, Mapping[str, float]]]


def _destination(branch: Branch, spec: RouteSpec) -> str:
    key = branch.routing_key if branch.routing_key is not None else spec.message_type
    return f"{branch.exchange or '(default)'} / {key}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _alternatives(spec: RouteSpec, live: Mapping[str, Mapping[str, object]] | None,
                  ) -> list[dict[str, Any]]:
    if spec.choice is None:
        return []
    rows = []
    for branch, share in zip(spec.choice.branches, spec.choice.shares(), strict=True):
        got = live.get(branch.name, {}) if live is not None else None
        skips = got.get("skips") if got is not None else None
        taken = _number(got.get("share", 0.0)) if got is not None else None
        rows.append({"name": branch.name, "destination": _destination(branch, spec),
                     "version": branch.version, "share": share,
                     "taken": None if taken is None else taken * SHARE_TOTAL,
                     "copies": _number(got.get("copies", 0)) if got is not None else None,
                     "skips": sorted((str(k), v) for k, v in skips.items())
                     if isinstance(skips, Mapping) else []})
    return rows


def _shadows(spec: RouteSpec, live: Mapping[str, Mapping[str, float]] | None,
             ) -> list[dict[str, Any]]:
    rows = []
    for shadow in spec.shadows:
        got = live.get(shadow.name, {}) if live is not None else None
        rows.append({"name": shadow.name, "destination": _destination(shadow, spec),
                     "share": shadow.share if shadow.share is not None else SHARE_TOTAL,
                     **{result: None if got is None else got.get(result, 0.0)
                        for result in SHADOW_RESULTS}})
    return rows


def strategy_rows(t: Topology, branches: BranchCounts | None,
                  shadows: ShadowCounts | None) -> list[dict[str, Any]]:
    """One entry per route with alternatives or shadows; counts are None without a router."""
    rows = []
    for spec in t.routes:
        if spec.choice is None and not spec.shadows:
            continue
        live = None if branches is None else branches.get(spec.name, {})
        rows.append({"route": spec.name,
                     "strategy": spec.choice.strategy.value if spec.choice else None,
                     "key": spec.choice.key if spec.choice else None,
                     "alternatives": _alternatives(spec, live),
                     "shadows": _shadows(spec, None if shadows is None
                                         else shadows.get(spec.name, {}))})
    return rows
