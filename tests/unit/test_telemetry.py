"""Telemetry configured from the standard OTEL_* variables, and log formats."""

from __future__ import annotations

import json
import logging

import pytest

from router.observe.logs import JsonFormatter, TextFormatter, context
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.observe.tracing import PropagatingTracer


def test_nothing_configured_means_no_exporting() -> None:
    """Without OTEL_* variables tracing only propagates context."""
    settings = TelemetrySettings.from_env({})

    assert not settings.enabled
    assert isinstance(Telemetry.start(settings).tracer, PropagatingTracer)


def test_http_endpoint_gets_the_traces_path() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is a base URL; /v1/traces is appended for http/protobuf."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/",
                                           "OTEL_SERVICE_NAME": "edge-router"})

    assert settings.enabled
    assert settings.endpoint == "http://jaeger:4318/v1/traces"
    assert (settings.protocol, settings.service_name) == ("http/protobuf", "edge-router")


def test_grpc_endpoint_is_used_as_given() -> None:
    """With protocol grpc the endpoint is host:port, no path."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317",
                                           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})

    assert (settings.protocol, settings.endpoint) == ("grpc", "http://jaeger:4317")
    assert Telemetry.start(settings).tracer is not None


def test_signal_specific_endpoint_wins() -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken as the full URL."""
    settings = TelemetrySettings.from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:9999/custom"})

    assert settings.endpoint == "http://b:9999/custom"


def test_sampler_and_ratio_are_read() -> None:
    """OTEL_TRACES_SAMPLER and its argument select the sampler."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                                           "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                           "OTEL_TRACES_SAMPLER_ARG": "0.1"})

    assert (settings.sampler, settings.ratio) == ("parentbased_traceidratio", 0.1)


def test_sdk_disabled_turns_exporting_off() -> None:
    """OTEL_SDK_DISABLED=true wins over an endpoint."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                                           "OTEL_SDK_DISABLED": "true"})

    assert not settings.enabled


@pytest.mark.parametrize(("name", "value"), [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                                             ("OTEL_TRACES_SAMPLER", "sometimes"),
                                             ("OTEL_TRACES_SAMPLER_ARG", "half"),
                                             ("OTEL_TRACES_EXPORTER", "zipkin"),
                                             ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
                                             ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                                              "http://collector:port/v1/traces"),
                                             ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http:///")])
def test_bad_values_are_refused_by_name(name: str, value: str) -> None:
    """A value the router cannot honour is an error that names the variable."""
    with pytest.raises(ValueError, match=name):
        TelemetrySettings.from_env({name: value})


def test_a_grpc_endpoint_may_be_host_and_port() -> None:
    """For grpc a bare host:port (or grpc's own target forms) is an endpoint, as given."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
                                           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})

    assert settings.endpoint == "collector:4317"


def test_headers_stay_out_of_repr() -> None:
    """Exporter headers (API keys) never show in a repr."""
    settings = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                                           "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret"})

    assert settings.headers == (("api-key", "s3cret"),)
    assert "s3cret" not in repr(settings)


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("router.settle", logging.INFO, __file__, 1, "dead-lettered (%s)",
                               ("malformed",), None)
    record.__dict__.update(extra)
    return record


def test_json_log_line_carries_the_message_context() -> None:
    """JSON logs: one object per line with message id, type, route and trace id."""
    about = context("m-1", "OrderCreated", trace_id="0af7", route="r1")

    line = json.loads(JsonFormatter().format(_record(**about)))

    assert line["message"] == "dead-lettered (malformed)"
    assert (line["level"], line["logger"]) == ("info", "router.settle")
    assert (line["message_id"], line["type"], line["route"], line["trace_id"]) == \
        ("m-1", "OrderCreated", "r1", "0af7")


def test_text_log_line_appends_the_message_context() -> None:
    """Readable logs end with the same fields in brackets."""
    line = TextFormatter().format(_record(**context("m-1", None, trace_id="0af7")))

    assert line.endswith("dead-lettered (malformed) [message_id=m-1 trace_id=0af7]")


def test_metrics_follow_the_otlp_endpoint_unless_turned_off() -> None:
    """The base endpoint exports metrics to /v1/metrics; OTEL_METRICS_EXPORTER=none stops it."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_METRIC_EXPORT_INTERVAL": "5000"}

    on = TelemetrySettings.from_env(env)
    off = TelemetrySettings.from_env({**env, "OTEL_METRICS_EXPORTER": "none"})

    assert (on.metrics_endpoint, on.metrics_interval_ms) == ("http://c:4318/v1/metrics", 5000)
    assert off.metrics_endpoint is None
    assert TelemetrySettings.from_env({}).metrics_endpoint is None
