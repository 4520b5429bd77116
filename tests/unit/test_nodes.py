"""Throwaway RabbitMQ nodes on paper: what Node.create writes, before anything starts."""

from __future__ import annotations

from pathlib import Path

from router.testing.nodes import Node, Placement


def test_a_placed_node_lives_under_its_base_with_the_cookie_given(tmp_path: Path) -> None:
    """A cluster's placement puts each node's folder under its base and shares one cookie."""
    placement = Placement(tmp_path, "c" * 32)
    first = Node.create("n-1", placement=placement)
    second = Node.create("n-2", placement=placement, settings={"log.file.level": "debug"})
    assert first.home.parent == second.home.parent == tmp_path
    assert first.cookie == second.cookie == "c" * 32
    assert "log.file.level = debug" in (second.home / "rabbitmq.conf").read_text()
    assert len({first.amqp_port, first.dist_port, second.amqp_port, second.dist_port}) == 4


def test_a_node_without_a_cookie_gets_its_own_and_management_is_opt_in(tmp_path: Path) -> None:
    """Without a cookie each node makes its own; the management port is opt-in."""
    where = Placement(tmp_path)
    lone = Node.create("solo", placement=where)
    managed = Node.create("mgmt", management=True, placement=where)
    assert len(lone.cookie) == 32
    assert lone.cookie != managed.cookie
    assert lone.management_url is None
    assert managed.management_url is not None
