"""The supervisor's aggregation of its workers: one exposition, one readiness."""

from __future__ import annotations

from router.runtime.fleet import WorkerView, fleet_readiness, merge_metrics, parse_readiness
from router.runtime.supervisor import worker_argv

WORKER = b"""# HELP mcp_router_messages_total Ingress messages settled
# TYPE mcp_router_messages_total counter
mcp_router_messages_total{outcome="routed",type="OrderCreated"} 3.0
# HELP mcp_router_processing_seconds Time
# TYPE mcp_router_processing_seconds histogram
mcp_router_processing_seconds_bucket{le="0.001"} 1.0
mcp_router_processing_seconds_count 3.0
# HELP mcp_router_in_flight_messages In flight
# TYPE mcp_router_in_flight_messages gauge
mcp_router_in_flight_messages 0.0
"""


def test_samples_are_labelled_by_worker_and_families_stay_together() -> None:
    """Each family's HELP/TYPE once, then every worker's samples with a worker label."""
    text = merge_metrics([(0, WORKER), (1, WORKER)]).decode()
    lines = text.splitlines()

    assert text.count("# TYPE mcp_router_messages_total counter") == 1
    start = lines.index("# TYPE mcp_router_messages_total counter")
    assert lines[start + 1:start + 3] == [
        'mcp_router_messages_total{worker="0",outcome="routed",type="OrderCreated"} 3.0',
        'mcp_router_messages_total{worker="1",outcome="routed",type="OrderCreated"} 3.0']
    assert 'mcp_router_processing_seconds_count{worker="1"} 3.0' in lines
    assert 'mcp_router_in_flight_messages{worker="0"} 0.0' in lines
    assert lines.index('mcp_router_processing_seconds_count{worker="1"} 3.0') < \
        lines.index("# TYPE mcp_router_in_flight_messages gauge")


def test_the_fleet_is_ready_only_when_every_worker_is() -> None:
    """One unready worker makes the whole fleet unready; the detail names each."""
    ready, detail = fleet_readiness([WorkerView(0, 10, ready=True), WorkerView(1, 11)])

    assert not ready
    assert [(w["worker"], w["ready"]) for w in detail["workers"]] == [(0, True), (1, False)]
    assert fleet_readiness([WorkerView(0, 10, ready=True)])[0]
    assert not fleet_readiness([])[0]


def test_a_worker_readiness_answer_is_parsed() -> None:
    """200 is ready; the JSON detail is kept without its own ready flag; junk is no detail."""
    assert parse_readiness(200, b'{"ready": true, "error": null}') == (True, {"error": None})
    assert parse_readiness(503, b"not json") == (False, {})


def test_workers_get_the_run_arguments_without_fleet_options() -> None:
    """--workers, --http and --amqp-url (in either spelling) are the supervisor's own."""
    argv = ["--config", "c", "--workers", "2", "--http=:8080", "--amqp-url", "amqp://x",
            "--prefetch", "64"]

    assert worker_argv(argv) == ["--config", "c", "--prefetch", "64"]
