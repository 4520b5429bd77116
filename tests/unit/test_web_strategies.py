"""The flow page's alternatives and shadows: configured shares, and what a router counted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from router.config.configuration import Config
from router.observe.metrics import Metrics
from router.web.app import make_app
from router.web.audit import AuditLog
from router.web.auth import Credentials
from router.web.broker import ConsoleBroker
from router.web.providers import Console, Ops
from tests.unit.conftest import LoadConfig
from tests.unit.test_alternatives import topology
from tests.unit.test_route_versions import SCHEMAS

UNREACHABLE = "amqp://guest:guest@127.0.0.1:1/"  # never connected to by these tests
ALTERNATIVES = [{"exchange": "orders", "routing_key": "stable", "share": 90},
                {"exchange": "orders", "routing_key": "canary", "share": 10, "version": 2,
                 "name": "canary<b>"}]
SHADOW = [{"exchange": "orders", "routing_key": "shadow.copy", "share": 5, "name": "mirror"}]


def _panel(tmp_path: Path, config: Config, **sources: Callable[[], Any]) -> str:
    console = Console(lambda: config, ConsoleBroker(UNREACHABLE, lambda: config),
                      Credentials(None), AuditLog(tmp_path / "audit.jsonl"), **sources)
    ops = Ops(lambda: (True, {}), lambda: b"")
    with TestClient(make_app(ops, console), base_url="http://127.0.0.1:8080") as c:
        response = c.get("/flow/panel")
    assert response.status_code == 200
    return response.text


def _weighted(config: LoadConfig) -> Config:
    return config(topology=topology(strategy="weighted", key="message.amount",
                                    alternatives=ALTERNATIVES, shadow=SHADOW),
                  schemas=SCHEMAS)


def test_a_router_shows_what_each_branch_took_and_why_it_skipped(
        tmp_path: Path, config: LoadConfig) -> None:
    """Strategy, configured share, share taken, copies, skips and shadow results, escaped."""
    snapshot = {"billing": {
        "orders/stable": {"copies": 1234, "share": 0.875, "skips": {}},
        "canary<b>": {"copies": 176, "share": 0.125,
                      "skips": {"circuit_open": 3, "<script>x</script>": 1}}}}
    shadows = {"billing": {"mirror": {"delivered": 60.0, "failed": 2.0, "dropped": 1.0}}}

    text = _panel(tmp_path, _weighted(config), branches=lambda: snapshot,
                  shadows=lambda: shadows)

    assert "Alternatives and shadows" in text
    assert "weighted" in text
    assert "key message.amount" in text
    assert "orders / stable" in text
    assert "90.0%" in text
    assert "87.5%" in text
    assert "1,234" in text
    assert "canary&lt;b&gt;" in text
    assert "canary<b>" not in text
    assert "circuit open 3" in text
    assert "&lt;script&gt;x&lt;/script&gt; 1" in text
    assert "<script>x" not in text
    assert "mirror" in text
    assert "5.0%" in text
    assert "delivered 60, failed 2, dropped 1" in text
    assert "Configured shares only" not in text


def test_without_a_router_the_configured_strategy_and_shares_show(
        tmp_path: Path, config: LoadConfig) -> None:
    """``mcp-router console`` without a router: strategy and shares, no counts."""
    text = _panel(tmp_path, _weighted(config))

    assert "Configured shares only" in text
    assert "weighted" in text
    assert "90.0%" in text
    assert "10.0%" in text
    assert "delivered" not in text


def test_a_route_without_alternatives_or_shadows_adds_no_section(
        tmp_path: Path, config: LoadConfig) -> None:
    """Plain routes: the flow page has no alternatives table."""
    plain = config(topology=topology(to=[{"exchange": "orders", "routing_key": "stable"}]),
                   schemas=SCHEMAS)

    assert "Alternatives and shadows" not in _panel(tmp_path, plain)


def test_the_metrics_hand_shadow_results_to_the_console() -> None:
    """``Metrics.shadows`` is each shadow's copies by result."""
    metrics = Metrics()
    metrics.shadow("billing", "mirror", "delivered")
    metrics.shadow("billing", "mirror", "delivered")
    metrics.shadow("billing", "mirror", "dropped")

    assert metrics.shadows() == {"billing": {"mirror": {"delivered": 2.0, "dropped": 1.0}}}
