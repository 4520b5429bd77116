"""A configuration renamed for one test: every broker name gets the test's prefix.

``prefix_topology`` and ``prefix_policy`` are pure: they return copies in
which every exchange and queue a document names (the implied ingress and
dead-letter defaults included) is ``<prefix>.<name>``; route names are kept.
``copy_prefixed`` writes such a copy of a checked configuration directory,
so tests that run at the same time never see each other's messages.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from router.config.topology import ControlSpec, DeadLetterSpec, IngressSpec

__all__ = ["copy_prefixed", "prefix_policy", "prefix_topology"]


def prefix_topology(topology: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """``topology.yaml`` with every exchange and queue named ``<prefix>.<name>``.

    The implied ingress, dead-letter and control entities are named explicitly,
    so their defaults are prefixed too (a test's services and router hear only
    each other); routes keep their names.
    """
    def name(value: str) -> str:
        return f"{prefix}.{value}"

    doc = dict(topology or {})
    ingress, dead = dict(doc.get("ingress") or {}), dict(doc.get("dead_letter") or {})
    ingress_default, dead_default = IngressSpec(), DeadLetterSpec()
    ingress["exchange"] = name(ingress.get("exchange", ingress_default.exchange))
    ingress["queue"] = name(ingress.get("queue", ingress_default.queue))
    dead["exchange"] = name(dead.get("exchange", dead_default.exchange))
    dead["queue"] = name(dead.get("queue", dead_default.queue))
    control = dict(doc.get("control") or {})
    control["exchange"] = name(control.get("exchange", ControlSpec().exchange))
    doc["ingress"], doc["dead_letter"], doc["control"] = ingress, dead, control
    doc["exchanges"] = [{**e, "name": name(e["name"])} for e in doc.get("exchanges") or []]
    doc["queues"] = [{**q, "name": name(q["name"])} for q in doc.get("queues") or []]
    doc["bindings"] = [{**b, "exchange": name(b["exchange"]), "queue": name(b["queue"])}
                       for b in doc.get("bindings") or []]
    doc["routes"] = [{**r, **{key: [{**d, "exchange": name(d["exchange"])} for d in r[key]]
                              for key in ("to", "alternatives", "shadow") if key in r}}
                     for r in doc.get("routes") or []]
    return doc


def prefix_policy(policy: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """A ``policies/*.yaml`` document with the exchanges and queues it names prefixed."""
    doc = dict(policy or {})
    if isinstance(doc.get("circuit_breakers"), list):
        doc["circuit_breakers"] = [
            {**rule, "exchange": f"{prefix}.{rule['exchange']}",
             **({"queues": [f"{prefix}.{q}" for q in rule["queues"]]} if "queues" in rule else {})}
            for rule in doc["circuit_breakers"]]
    encryption = doc.get("encryption")
    if isinstance(encryption, dict) and isinstance(encryption.get("plain"), list):
        doc["encryption"] = {**encryption, "plain": [
            {**rule, "exchange": f"{prefix}.{rule['exchange']}"} if "exchange" in rule else rule
            for rule in encryption["plain"]]}
    return doc


def copy_prefixed(source: Path, target: Path, prefix: str) -> None:
    """Copy a checked configuration directory, its broker names prefixed."""
    topology = yaml.safe_load((source / "topology.yaml").read_text(encoding="utf-8"))
    (target / "topology.yaml").write_text(yaml.safe_dump(prefix_topology(topology, prefix),
                                                         sort_keys=False), encoding="utf-8")
    shutil.copytree(source / "schemas", target / "schemas")
    if (source / "keys").is_dir():  # wrapped data keys (router.config.keys)
        shutil.copytree(source / "keys", target / "keys")
    if (source / "policies").is_dir():
        (target / "policies").mkdir()
        for file in sorted((source / "policies").glob("*.yaml")):
            policy = yaml.safe_load(file.read_text(encoding="utf-8"))
            (target / "policies" / file.name).write_text(
                yaml.safe_dump(prefix_policy(policy, prefix), sort_keys=False), encoding="utf-8")
