"""A pytest plugin: a real router on your configuration, inside your service's own tests.

Installed with mcp-router (entry point ``pytest11``), it adds the
``mcp_router`` fixture (it needs pytest-asyncio, in any mode: an ``async def``
test that uses the fixture is marked ``asyncio`` for you)::

    @pytest.mark.mcp_router(config="deploy/router")   # default: ini mcp_router_config, rootdir
    async def test_orders_reach_billing(mcp_router):
        await mcp_router.publish("OrderCreated", order, version=2)
        [copy] = await mcp_router.expect("billing.orders")
        assert copy.body["order_id"] == order["order_id"]

        await mcp_router.publish("OrderCreated", {"total_amount": "lots"})
        [dead] = await mcp_router.dead_letters(reason="schema_invalid")

The fixture checks the configuration (a bad one fails the test with
``FILE:LINE: message`` lines), copies it with every exchange and queue
renamed ``<prefix>.<name>`` (unique per test, so tests never see each
other's messages), declares it on the broker at ``MCP_AMQP_URL`` (or
``AMQP_URL``; default the local guest), runs ``RouterService`` in the test's
event loop, and afterwards stops it and deletes everything it declared.

Waiting is always bounded: ``expect``, ``routed`` and ``dead_letters`` fail
with an ``AssertionError`` naming what arrived and which dead letters were
seen. Queues are consumed by real consumers, started the first time a test
asks about a queue, so a queue the test leaves alone is free for the
service's own consumer (``mcp_router.name("billing.orders")`` is its real
name). Each delivery is returned once.

Throwaway brokers, for tests of what must never happen to a shared one
(stopped nodes, closed connections, alarms): ``rabbitmq_cluster`` is a
three-node cluster (``router.testing.cluster``) started once per test session, and
``rabbitmq_node_factory`` starts single nodes (``router.testing.nodes``) for the
session, e.g. ``rabbitmq_node_factory("slow", settings={"consumer_timeout":
"2000"})``.  Both are removed when the session ends; when ``rabbitmq-server``
is not installed they skip (fail when ``CI`` is set).  The cluster starts booting
as soon as collection shows a test that uses it (``router.testing.booting``), so it
boots while the tests before it run; ``start_node_early(config, name, **options)``,
called from a conftest's ``pytest_collection_finish``, does the same for a node the
factory will be asked for with that name and those options::

    def test_survives_a_node(rabbitmq_cluster):
        url = ",".join(rabbitmq_cluster.urls)      # MCP_AMQP_URL for a router
        rabbitmq_cluster.nodes[0].kill()           # kill -9; .start() brings it back

This module is the plugin (hooks and fixtures); the parts it assembles live in
``router.testing.prefixing`` (the per-test copy of the configuration),
``router.testing.harness`` (the router as a task, the teardown), ``router.testing.inbox``
(what a queue's consumer received) and ``router.testing.undertest`` (the handle).
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from router.testing.booting import Early
from router.testing.cluster import Cluster
from router.testing.harness import RunningRouter, delete_entities
from router.testing.inbox import Delivery
from router.testing.nodes import Node, rabbitmq_installed
from router.testing.prefixing import copy_prefixed, prefix_policy, prefix_topology
from router.testing.undertest import RouterUnderTest

__all__ = ["Cluster", "Delivery", "Node", "RouterUnderTest", "RunningRouter", "delete_entities",
           "prefix_policy", "prefix_topology", "start_node_early"]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY_TIMEOUT = 30.0

MARKER = "mcp_router"
INI = "mcp_router_config"
CLUSTER_SIZE = 3
_EARLY = pytest.StashKey[Early]()

# Every prefix this process handed out: a test suite may sweep what they left on a shared
# broker at its end, and must leave alone what other sessions, at the same time, declared.
PREFIXES: set[str] = set()


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str,
                              obj: object) -> Generator[None, Any, None]:
    """Mark an ``async def`` test that uses ``mcp_router`` with ``asyncio``.

    In pytest-asyncio's default (strict) mode an unmarked coroutine test is
    not run ("async def functions are not natively supported"); a test asking
    for this fixture can only mean to run in the loop.  ``trylast`` makes this
    wrapper the inner one, so pytest-asyncio's own wrapper sees the mark.
    """
    outcome = yield
    if not inspect.iscoroutinefunction(obj):
        return
    result = outcome.get_result()
    for node in result if isinstance(result, list) else [result]:
        if isinstance(node, pytest.Function) and MARKER in node.fixturenames and \
                node.get_closest_marker("asyncio") is None:
            node.add_marker(pytest.mark.asyncio)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI, "configuration directory the mcp_router fixture routes with, relative "
                       "to the rootdir (default: the rootdir)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(config=DIR): the configuration directory "
                                       "the mcp_router fixture routes with (relative to the "
                                       "rootdir)")


@pytest.fixture
def mcp_router_config(request: pytest.FixtureRequest) -> Path:
    """The configuration directory: the marker's ``config``, else the ini option, else rootdir.

    Override this fixture to choose it in code.
    """
    marker = request.node.get_closest_marker(MARKER)
    chosen = (marker.kwargs.get("config") or (marker.args[0] if marker.args else None)
              if marker is not None else None) or request.config.getini(INI) or "."
    return (request.config.rootpath / Path(chosen)).resolve()


@pytest.fixture
def mcp_router_url() -> str:
    """The broker: ``MCP_AMQP_URL``, else ``AMQP_URL``, else the local guest."""
    # This plugin is an entry point, like the CLI: it may read the environment.
    return os.environ.get("MCP_AMQP_URL") or os.environ.get("AMQP_URL") or DEFAULT_URL


async def _start(directory: Path, url: str, workdir: Path) -> RouterUnderTest:
    from router.broker.amqp import connect  # noqa: PLC0415 - lazy: pytest loads every plugin
    from router.broker.declare import declare_config  # noqa: PLC0415 - lazy
    from router.config.configuration import check_config, load_config  # noqa: PLC0415 - lazy
    from router.config.keys import kek_from  # noqa: PLC0415 - lazy
    from router.errors import BrokerUnavailable  # noqa: PLC0415 - lazy
    from router.runtime.service import RouterService, Settings  # noqa: PLC0415 - lazy

    problems = check_config(directory)
    if problems:
        pytest.fail(f"mcp_router: {directory} does not check:\n"
                    + "\n".join(str(p) for p in problems), pytrace=False)
    prefix = f"mcpt-{uuid.uuid4().hex[:10]}"
    PREFIXES.add(prefix)
    copy_prefixed(directory, workdir, prefix)
    config = load_config(workdir)
    try:
        connection = await connect(url, "mcp-router testing")
    except BrokerUnavailable as exc:
        pytest.fail(f"mcp_router: {exc} (set MCP_AMQP_URL)", pytrace=False)
    try:
        await declare_config(connection, config)
        # The KEK of sensitive fields, as the router takes it (MCP_KEK_FILE / MCP_KEK).
        router = RunningRouter.start(RouterService(config, Settings(url,
                                                                    kek=kek_from(os.environ))))
        handle = RouterUnderTest(config, prefix, url, connection, router)
    except BaseException:
        await delete_entities(connection, [e.name for e in config.topology.all_exchanges()],
                              [q.name for q in config.broker_queues()])
        await connection.close()
        raise
    try:
        await router.wait_ready(READY_TIMEOUT)
        await handle._inbox(handle._dead_queue())  # failures list the dead letters seen
    except BaseException:
        await handle.close()
        raise
    return handle


async def _mcp_router(mcp_router_config: Path, mcp_router_url: str,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RouterUnderTest]:
    handle = await _start(mcp_router_config, mcp_router_url,
                          tmp_path_factory.mktemp("mcp-router"))
    try:
        yield handle
    finally:
        await handle.close()


def _needs_pytest_asyncio() -> None:
    pytest.fail("the mcp_router fixture needs pytest-asyncio: pip install 'mcp-router[testing]'",
                pytrace=False)


def _fixture() -> Any:
    """An async fixture where pytest-asyncio is installed; without it, one that says so."""
    try:
        import pytest_asyncio  # noqa: PLC0415 -- optional: plain pytest runs still load us
    except ImportError:
        return pytest.fixture(_needs_pytest_asyncio, name="mcp_router")
    return pytest_asyncio.fixture(_mcp_router, name="mcp_router")


mcp_router = _fixture()


def _require_rabbitmq_server() -> None:
    if rabbitmq_installed():
        return
    message = "rabbitmq-server is not installed: no throwaway RabbitMQ nodes"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: these tests must not be skipped)", pytrace=False)
    pytest.skip(message)


def _early(config: pytest.Config) -> Early:
    return config.stash.setdefault(_EARLY, Early())


def _boots_early(config: pytest.Config) -> bool:
    """Not for ``--collect-only``, nor in a pytest-xdist worker (every worker collects
    every test, and would boot what another one runs)."""
    return (rabbitmq_installed() and not config.option.collectonly
            and not hasattr(config, "workerinput"))


def _node_name(name: str) -> str:
    return f"mcpt-{uuid.uuid4().hex[:6]}-{name}"


def start_node_early(config: pytest.Config, name: str, **options: Any) -> None:
    """Launch now the node ``rabbitmq_node_factory(name, **options)`` will return, to boot
    while other tests run (call it from ``pytest_collection_finish``)."""
    if _boots_early(config):
        _early(config).start_node(name, _node_name(name), **options)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the session's cluster booting when a collected test will use it."""
    if not _boots_early(session.config):
        return
    if any("rabbitmq_cluster" in getattr(item, "fixturenames", ()) for item in session.items):
        _early(session.config).start_cluster(CLUSTER_SIZE)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove what was started early and never claimed."""
    early = session.config.stash.get(_EARLY, None)
    if early is not None:
        early.close()


@pytest.fixture(scope="session")
def rabbitmq_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Three throwaway RabbitMQ nodes in one cluster, for the whole session.

    A test that stops or kills nodes brings them back (``cluster.heal()``).
    """
    _require_rabbitmq_server()
    cluster = _early(request.config).take_cluster() or Cluster.start(CLUSTER_SIZE)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def rabbitmq_node_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Node]]:
    """Start throwaway single RabbitMQ nodes: ``factory(name, management=, settings=)``.

    Each is started and waited for, and removed when the session ends.
    """
    _require_rabbitmq_server()
    nodes: list[Node] = []
    early = _early(request.config)

    def start(name: str, **options: Any) -> Node:
        node = early.take_node(name, options)
        if node is None:
            node = Node.create(_node_name(name), **options)
            node.start()
        nodes.append(node)
        node.wait()
        return node

    try:
        yield start
    finally:
        for node in nodes:
            node.close()
