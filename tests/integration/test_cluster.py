"""The fault ledger on a three-node cluster: nodes, replicas and the network are hurt while
a counted stream flows, and every message must be routed or dead-lettered.

Each row publishes messages at ``RATE``/s through an at-least-once publisher (every
message confirmed; one whose confirm was lost is published again, possibly to another
node) while a drainer empties the destination and the dead letters.  The fault comes once
the stream runs through the router (``Row.flowing``: 200 messages routed), and the stream
goes on until a second after the fault is over (``Row.finish``), however long the fault
takes on a loaded machine.  Lost must be 0; duplicates at most kills x prefetch (plus the
publisher's own republishing).  The table is printed at the end of the session and copied
into the README.

The cluster is the session's ``rabbitmq_cluster`` (router.testing.plugin); every row heals it
afterwards.  Recovery is the time from the fault (or its clearing) until the router has
20 more copies confirmed (replica rows: until 50 more routed copies arrive).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from router.testing.cluster import Cluster
from router.testing.nodes import Node
from tests.integration.conftest import ConfigDir, free_port, wait_until
from tests.integration.ledger import PREFETCH, STARTED, confirmed_again, http_ready
from tests.integration.tcpproxy import TcpProxy

FAST = {"reconnect_delay": 0.2, "max_reconnect_delay": 1.0, "prefetch": PREFETCH}


@pytest.fixture
def cluster(rabbitmq_cluster: Cluster) -> Any:
    """The session's cluster, healed after every row."""
    STARTED["the three-node cluster fixture"] = rabbitmq_cluster.started_in
    yield rabbitmq_cluster
    rabbitmq_cluster.heal()


@pytest.fixture(autouse=True)
def _replicated(config_dir: ConfigDir) -> None:
    """Quorum queues only, as on any cluster: a classic queue lives on one node."""
    topology = config_dir.topology
    topology["queues"] = [{"name": q["name"], "type": "quorum"} if q["type"] == "classic"
                          else q for q in topology["queues"]]
    config_dir.write(topology)


@pytest.fixture
def amqp_url(cluster: Cluster) -> str:
    """Every node, comma-separated, as MCP_AMQP_URL takes them."""
    return ",".join(cluster.urls)


def _node_of(cluster: Cluster, router: Any) -> Node:
    """The node an in-process router is connected to (from ``/readyz``'s ``node``)."""
    node = router.service.node
    return next(n for n in cluster if f":{n.amqp_port}/" in node)


async def _in(seconds: float) -> None:
    """How long a fault lasts (the fault's schedule, not a wait for a condition)."""
    await asyncio.sleep(seconds)


async def test_kill_9_of_the_routers_node(ledger_row, start_router, cluster: Cluster,
                                          config_dir: ConfigDir) -> None:
    """The node the router is on dies: it fails over to another, nothing is lost."""
    router = await start_router(config_dir, **FAST)
    row = await ledger_row("kill -9 of the router's node")
    await row.flowing()
    victim = _node_of(cluster, router)
    await asyncio.to_thread(victim.kill)
    killed, routing = time.monotonic(), confirmed_again(router)
    await _in(2.0)
    await asyncio.to_thread(victim.start)

    await row.finish(killed, kills=1, routing=routing)
    assert _node_of(cluster, router) is not victim  # /readyz's "node" names the new one


async def test_kill_9_of_the_ingress_leader(ledger_row, start_router, cluster: Cluster,
                                            config_dir: ConfigDir) -> None:
    """The node leading the ingress quorum queue dies: a new leader is elected."""
    router = await start_router(config_dir, **FAST)
    row = await ledger_row("kill -9 of the ingress queue's leader")
    await row.flowing()
    leader = await asyncio.to_thread(cluster.leader, config_dir.ingress_queue)
    await asyncio.to_thread(leader.kill)
    killed, routing = time.monotonic(), confirmed_again(router)
    await _in(2.0)
    await asyncio.to_thread(leader.start)

    await row.finish(killed, kills=1, routing=routing)


async def test_stop_and_restart_of_a_node(ledger_row, start_router, cluster: Cluster,
                                          config_dir: ConfigDir) -> None:
    """stop_app, then start_app, on the router's node."""
    router = await start_router(config_dir, **FAST)
    row = await ledger_row("stop and restart of one node")
    await row.flowing()
    node = _node_of(cluster, router)
    await asyncio.to_thread(node.ctl, "stop_app")
    await _in(2.0)
    await asyncio.to_thread(node.ctl, "start_app")
    cleared = time.monotonic()

    await row.finish(cleared, kills=1, routing=confirmed_again(router))


async def test_majority_lost_for_ten_seconds(ledger_row, start_router, cluster: Cluster,
                                             config_dir: ConfigDir) -> None:
    """Two of three nodes down for 10 s: the router holds, loses nothing, and resumes."""
    router = await start_router(config_dir, **FAST)
    row = await ledger_row("majority lost (2 of 3 nodes down 10 s)")
    await row.flowing()
    keep = _node_of(cluster, router)
    others = [n for n in cluster if n is not keep]
    for node in others:
        await asyncio.to_thread(node.kill)
    await _in(10.0)
    for node in others:
        await asyncio.to_thread(node.start)
    cleared = time.monotonic()

    await row.finish(cleared, kills=1, routing=confirmed_again(router))


async def _replicas(router_process: Any, config_dir: ConfigDir, count: int) -> list[Any]:
    """``count`` router processes on the cluster, each answering /readyz with 200."""
    ports = [free_port() for _ in range(count)]
    procs = [router_process(config_dir, "--prefetch", str(PREFETCH), "--http",
                            f"127.0.0.1:{port}") for port in ports]

    async def all_ready() -> bool:
        return all(await asyncio.gather(*(http_ready(port)() for port in ports)))

    await wait_until(all_ready, timeout=60)
    return procs


async def test_replica_killed(ledger_row, router_process, config_dir: ConfigDir) -> None:
    """One of three replicas is killed with kill -9: the others take its share."""
    replicas = await _replicas(router_process, config_dir, 3)
    row = await ledger_row("replica: kill -9 one of three")
    await row.flowing()
    replicas[0].proc.kill()
    killed = time.monotonic()

    await row.finish(killed, kills=1)


async def test_replica_stopped(ledger_row, router_process, config_dir: ConfigDir) -> None:
    """One of three replicas gets SIGTERM: it drains and exits 0, nothing duplicated twice."""
    replicas = await _replicas(router_process, config_dir, 3)
    row = await ledger_row("replica: SIGTERM one of three")
    await row.flowing()
    replicas[0].proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()

    await row.finish(stopped)
    assert await asyncio.to_thread(replicas[0].proc.wait, 30) == 0, replicas[0].output()


async def test_replica_added(ledger_row, router_process, config_dir: ConfigDir) -> None:
    """A replica joins while messages flow: it takes a share, nothing is lost."""
    await _replicas(router_process, config_dir, 1)
    row = await ledger_row("replica: one added while flowing")
    await row.flowing()
    await _replicas(router_process, config_dir, 1)
    added = time.monotonic()

    await row.finish(added)


@pytest.fixture
async def proxy(cluster: Cluster) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the first node."""
    tcp = TcpProxy(cluster.nodes[0].amqp_port)
    await tcp.start()
    yield tcp
    await tcp.close()


async def test_network_blackhole_for_three_seconds(ledger_row, start_router, proxy: TcpProxy,
                                                   config_dir: ConfigDir,
                                                   amqp_url: str) -> None:
    """Every byte between router and node dropped for 3 s: the router waits it out."""
    router = await start_router(config_dir, amqp_url=proxy.url, **FAST)
    row = await ledger_row("network: 3 s blackhole")
    await row.flowing()
    proxy.blackhole()
    await _in(3.0)
    proxy.blackhole(False)
    cleared = time.monotonic()

    await row.finish(cleared, kills=1, routing=confirmed_again(router))


async def test_network_latency(ledger_row, start_router, proxy: TcpProxy,
                               config_dir: ConfigDir) -> None:
    """300 ms added to every packet for 4 s: slower, nothing lost."""
    router = await start_router(config_dir, amqp_url=proxy.url, **FAST)
    row = await ledger_row("network: 300 ms latency for 4 s")
    await row.flowing()
    proxy.latency = 0.3
    await _in(4.0)
    proxy.latency = 0.0
    cleared = time.monotonic()

    await row.finish(cleared, routing=confirmed_again(router))


async def test_half_open_connection_noticed_by_heartbeats(
        ledger_row, start_router, proxy: TcpProxy, config_dir: ConfigDir) -> None:
    """The connection goes silent without a FIN: heartbeats notice, the router reconnects."""
    router = await start_router(config_dir, amqp_url=proxy.url, heartbeat=2, **FAST)
    row = await ledger_row("network: half-open connection")
    await row.flowing()
    proxy.sever()
    severed, routing = time.monotonic(), confirmed_again(router)

    await row.finish(severed, kills=1, routing=routing)
    lost = router.service.metrics.registry.get_sample_value(
        "mcp_router_broker_sessions_lost_total") or 0
    assert lost >= 1
