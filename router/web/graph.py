"""The route graph, ingress -> routes -> exchanges -> queues, laid out for SVG (pure).

Four columns; each node's row follows the first node that leads to it, so
edges mostly run straight.  Edges are cubic curves between the columns;
templates draw them (and escape every name).
"""

from __future__ import annotations

from dataclasses import dataclass

from router.config.topology import Topology

__all__ = ["Edge", "Graph", "Node", "route_graph"]

COLUMN_X = (20, 220, 510, 780)
NODE_W = (170, 190, 170, 200)
NODE_H = 38
ROW_H = 50
TOP = 30


@dataclass(frozen=True, slots=True)
class Node:
    key: str  # unique: kind and name
    kind: str  # ingress | route | exchange | queue | dead
    label: str
    sub: str  # a second line: the message type, the exchange type, the queue type
    x: int
    y: int
    width: int
    height: int = NODE_H


@dataclass(frozen=True, slots=True)
class Edge:
    path: str
    label: str
    label_x: int
    label_y: int
    dashed: bool = False
    anchor: str = "end"  # SVG text-anchor of the label


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, key: str) -> Node | None:
        return next((n for n in self.nodes if n.key == key), None)


def _edge(a: Node, b: Node, label: str, dashed: bool = False, at_source: bool = False) -> Edge:
    """A curve from ``a``'s right side to ``b``'s left; the label where edges do not meet."""
    x1, y1 = a.x + a.width, a.y + a.height // 2
    x2, y2 = b.x, b.y + b.height // 2
    mid = (x1 + x2) // 2
    path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
    if at_source:
        return Edge(path, label, x1 + 5, y1 - 4, dashed, "start")
    return Edge(path, label, x2 - 5, y2 - 4, dashed, "end")


def _columns(t: Topology) -> list[list[tuple[str, str, str, str]]]:
    """(key, kind, label, sub) per column, in drawing order."""
    types = {e.name: e.type for e in t.all_exchanges()}
    qtypes = {q.name: q.type for q in t.all_queues()}
    exchanges: list[str] = []
    for route in t.routes:
        exchanges += [d.exchange for d in route.to if d.exchange not in exchanges]
    exchanges += [e.name for e in t.exchanges if e.name not in exchanges]
    exchanges.append(t.dead_letter.exchange)
    queues: list[str] = []
    for name in exchanges:
        queues += [b.queue for b in t.all_bindings()
                   if b.exchange == name and b.queue not in queues]
    queues += [q.name for q in t.all_queues()
               if q.name not in queues and q.name != t.ingress.queue]
    return [
        [("ingress", "ingress", t.ingress.exchange, f"-> {t.ingress.queue}")],
        [(f"route:{r.name}", "route", r.name, r.message_type + (" (when)" if r.when else ""))
         for r in t.routes],
        [(f"exchange:{x}", "dead" if x == t.dead_letter.exchange else "exchange", x,
          types.get(x, "?")) for x in exchanges],
        [(f"queue:{q}", "dead" if q == t.dead_letter.queue else "queue", q,
          qtypes.get(q, "?")) for q in queues],
    ]


def route_graph(t: Topology) -> Graph:
    """Every route, exchange and queue of ``t`` with the edges between them."""
    columns = _columns(t)
    rows = max(len(c) for c in columns)
    nodes: dict[str, Node] = {}
    for i, column in enumerate(columns):
        offset = (rows - len(column)) * ROW_H // 2 if i == 0 else 0
        for j, (key, kind, label, sub) in enumerate(column):
            nodes[key] = Node(key, kind, label, sub, COLUMN_X[i], TOP + offset + j * ROW_H,
                              NODE_W[i])
    edges = [_edge(nodes["ingress"], nodes[f"route:{r.name}"], "") for r in t.routes]
    for r in t.routes:
        edges += [_edge(nodes[f"route:{r.name}"], nodes[f"exchange:{d.exchange}"],
                        d.routing_key or r.message_type, at_source=True)
                  for d in r.to if f"exchange:{d.exchange}" in nodes]
    for b in t.all_bindings():
        a, z = nodes.get(f"exchange:{b.exchange}"), nodes.get(f"queue:{b.queue}")
        if a is not None and z is not None:
            edges.append(_edge(a, z, b.routing_key, dashed=a.kind == "dead"))
    edges.append(_edge(nodes["ingress"], nodes[f"exchange:{t.dead_letter.exchange}"],
                       "", dashed=True))
    width = COLUMN_X[-1] + NODE_W[-1] + 20
    return Graph(width, TOP * 2 + rows * ROW_H, tuple(nodes.values()), tuple(edges))
