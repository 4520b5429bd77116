"""``plan``: what ``apply`` would do, read through the management API or passively.

On the suite's throwaway node with the management plugin (``solo``): the shared
broker's plugins are not the suite's to enable.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiormq
import pytest

from router.testing.nodes import Node
from tests.integration.conftest import ROOT, Broker, ConfigDir, apply


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


@pytest.fixture
def amqp_url(solo_url: str) -> str:
    """The throwaway node: the shared broker's plugins are not the suite's to enable."""
    return solo_url


@pytest.fixture
def management(solo: Node) -> str:
    """The throwaway node's management API."""
    assert solo.management_url is not None
    return solo.management_url


@pytest.fixture(params=["management", "passive"])
def via(request: pytest.FixtureRequest) -> list[str]:
    """``plan`` reads the broker through the management API, or by passive declarations."""
    if request.param == "management":
        return ["--via", "management", "--management-url",
                request.getfixturevalue("management")]
    return ["--via", "passive"]


async def test_plan_lists_what_apply_would_create_and_creates_nothing(
        broker: Broker, config_dir: ConfigDir, via: list[str]) -> None:
    """Before apply every entity is to be created, and plan leaves the broker as it was."""
    result = await asyncio.to_thread(_cli, "plan", "--config", str(config_dir.path),
                                     "--amqp-url", broker.url, *via)

    assert result.returncode == 0, result.stderr
    assert ("management API" in result.stdout) is ("management" in via)
    assert f"+ create queue {config_dir.name('billing')} (quorum)" in result.stdout
    assert f"+ create exchange {config_dir.name('orders')} (topic)" in result.stdout
    channel = await broker.connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await channel.declare_queue(config_dir.name("billing"), passive=True)


async def test_plan_after_apply_reports_conflicts_by_name(broker: Broker,
                                                          config_dir: ConfigDir,
                                                          via: list[str]) -> None:
    """After apply nothing is to be created; an entity changed behind its back conflicts."""
    await apply(config_dir, broker.url)
    channel = await broker.connection.channel()
    await channel.queue_delete(config_dir.name("review"))
    await channel.declare_queue(config_dir.name("review"), durable=True)  # no max priority
    # The re-declared queue lost its binding: only the management API can see that.
    review = await channel.get_queue(config_dir.name("review"), ensure=False)
    await review.bind(config_dir.name("orders"), "order.review")

    result = await asyncio.to_thread(_cli, "plan", "--config", str(config_dir.path),
                                     "--amqp-url", broker.url, *via)

    assert result.returncode == 1
    assert "+ create" not in result.stdout
    assert f"! conflict queue {config_dir.name('review')} (classic)" in result.stdout
    assert "x-max-priority" in result.stdout
    assert "0 to create" in result.stdout


async def test_plan_through_the_management_api_sees_missing_bindings_and_arguments(
        broker: Broker, config_dir: ConfigDir, management: str, solo: Node) -> None:
    """The management API shows a binding that was removed, which passive declarations
    cannot see."""
    await apply(config_dir, broker.url)
    channel = await broker.connection.channel()
    billing = await channel.get_queue(config_dir.name("billing"), ensure=False)
    await billing.unbind(config_dir.name("orders"), "order.created")

    result = await asyncio.to_thread(_cli, "plan", "--config", str(config_dir.path),
                                     "--amqp-url", broker.url, "--management-url", management)

    assert result.returncode == 0, result.stderr
    assert (f"+ create binding {config_dir.name('orders')} -> {config_dir.name('billing')} "
            "[order.created]") in result.stdout
    assert "1 to create" in result.stdout
    api = f"http://guest:***@127.0.0.1:{solo.management_port}/"
    assert f"read through the management API at {api}" in result.stdout
