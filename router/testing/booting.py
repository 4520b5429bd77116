"""Throwaway brokers that boot in the background while the tests before them run.

A RabbitMQ node takes seconds to boot, a three-node cluster with its joins about
fifteen on two cores, most of it waiting.  A session that will need one can start it as
soon as collection shows which tests run (``router.testing.plugin`` does that for
``rabbitmq_cluster``; a conftest can for the nodes it asks ``rabbitmq_node_factory``
for).  ``Early`` holds what was started that way: the fixtures take from it, and what no
test claimed is removed when the session ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.testing.cluster import Cluster
from router.testing.nodes import Node

__all__ = ["Early", "in_background"]

T = TypeVar("T")
CLOSE_WAIT = 120.0  # seconds to wait for a cluster still booting when the session ends


def in_background(work: Callable[[], T], name: str) -> Future[T]:
    """Run ``work`` in a daemon thread; its result (or exception) in the future.

    Daemon: an interrupted session does not wait for a boot at exit; the nodes' own
    watchdog (``router.testing.nodes``) stops them when this process is gone.
    """
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 -- handed to whoever takes the result
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


@dataclass
class Early:
    """The cluster and the nodes started before a test asked for them."""

    cluster: Future[Cluster] | None = None
    nodes: dict[str, tuple[dict[str, Any], Node]] = field(default_factory=dict)

    def start_cluster(self, size: int) -> None:
        """Start (and join) a cluster of ``size`` nodes in the background."""
        if self.cluster is None:
            self.cluster = in_background(lambda: Cluster.start(size), "rabbitmq-cluster")

    def start_node(self, name: str, node_name: str, **options: Any) -> None:
        """Launch node ``node_name`` (``Node.create`` options); it boots on its own."""
        if name not in self.nodes:
            node = Node.create(node_name, **options)
            node.start()
            self.nodes[name] = (options, node)

    def take_cluster(self) -> Cluster | None:
        """The cluster started early, once booted (its start's exception if it failed)."""
        future, self.cluster = self.cluster, None
        return None if future is None else future.result()

    def take_node(self, name: str, options: dict[str, Any]) -> Node | None:
        """The node launched early as ``name`` with these ``options`` (still booting)."""
        entry = self.nodes.pop(name, None)
        if entry is None:
            return None
        launched, node = entry
        if launched != options:  # asked for another node than the one launched
            node.close()
            return None
        return node

    def close(self) -> None:
        """Remove whatever no test claimed."""
        if self.cluster is not None:
            with contextlib.suppress(Exception):  # its failure was nobody's test's
                self.cluster.result(CLOSE_WAIT).close()
            self.cluster = None
        for _, node in self.nodes.values():
            node.close()
        self.nodes.clear()
