"""A RabbitMQ cluster of throwaway nodes, for tests of what happens when nodes go.

``Cluster.start(3)`` starts three ``router.testing.nodes.Node`` s in parallel, joins
the second and third to the first (``stop_app``, ``join_cluster``,
``start_app``, as an operator would) and waits until all three run.  Every
node shares one Erlang cookie of its own; ``close`` removes them all.  The
pytest plugin (``router.testing.plugin``) offers one per test session as the
``rabbitmq_cluster`` fixture.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from router.testing.nodes import Node, NodeError, Placement

__all__ = ["Cluster"]


@dataclass
class Cluster:
    """Nodes joined in one cluster; ``urls`` lists them for ``--amqp-url``."""

    nodes: list[Node]
    base: Path
    started_in: float = 0.0  # seconds the whole start took
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def start(cls, size: int = 3, *, prefix: str | None = None,
              settings: Mapping[str, str] | None = None) -> Cluster:
        """Start ``size`` nodes and cluster them; on any failure nothing is left running."""
        began = time.monotonic()
        base = Path(tempfile.mkdtemp(prefix="mcp-cluster-"))
        base.chmod(0o755)  # the nodes' own user must reach their folders
        name = prefix or f"mcpc-{uuid.uuid4().hex[:6]}"
        cookie = secrets.token_hex(16)
        placement = Placement(base, cookie)
        cluster = cls([Node.create(f"{name}-{i + 1}", settings=settings, placement=placement)
                       for i in range(size)], base)
        try:
            for node in cluster.nodes:
                node.start()
            for node in cluster.nodes:
                node.wait()
            first = cluster.nodes[0]
            for node in cluster.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", first.name)
                node.ctl("start_app")
            for node in cluster.nodes:
                node.ctl("await_startup")
        except BaseException:
            cluster.close()
            raise
        cluster.started_in = time.monotonic() - began
        return cluster

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name_or_port: str | int) -> Node:
        """The node with this Erlang name (or short name), or AMQP port."""
        for node in self.nodes:
            if name_or_port in (node.name, node.short_name, node.amqp_port):
                return node
        raise KeyError(name_or_port)

    def running(self) -> list[str]:
        """The running nodes as the first live node sees them (``cluster_status``)."""
        for node in self.nodes:
            with contextlib.suppress(NodeError, ValueError):
                status = json.loads(node.ctl("cluster_status", "--formatter", "json",
                                             timeout=30))
                return sorted(str(name) for name in status.get("running_nodes", []))
        return []

    def leader(self, queue: str, vhost: str = "/") -> Node:
        """The node leading quorum queue ``queue`` now."""
        for node in self.nodes:
            if node.os_pid() is None:
                continue
            with contextlib.suppress(NodeError):
                out = node.ctl("list_queues", "-p", vhost, "name", "leader", "--no-table-headers",
                               "--quiet", timeout=30)
                for line in out.splitlines():
                    parts = line.split("\t")
                    if len(parts) == 2 and parts[0] == queue:
                        return self.node(parts[1].strip())
        raise NodeError(f"no live node knows the leader of {queue!r}")

    def heal(self) -> None:
        """Start every node that is down, wait for every node still booting, and start the
        application where a test stopped it (between tests; a healthy cluster costs a TCP
        connection to each node's AMQP port: a stopped application closes its listener)."""
        for node in self.nodes:
            if node.os_pid() is None:
                node.start()
        for node in self.nodes:
            if node.booting:
                node.wait()
        for node in self.nodes:
            if not node.listening():
                node.ctl("start_app")
                node.ctl("await_startup")

    def close(self) -> None:
        """Stop every node and remove the cluster's folders."""
        if self._closed:
            return
        self._closed = True
        for node in self.nodes:
            node.close()
        with contextlib.suppress(OSError):
            self.base.rmdir()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)
