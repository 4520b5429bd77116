"""Tracing set up the standard way, from the ``OTEL_*`` variables.

The entry point reads the environment (``TelemetrySettings.from_env``); this
module builds the tracer from the settings:

* nothing configured: ``PropagatingTracer``, which only carries trace context
  (a fresh span id per span, about 2 µs) and exports nothing;
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
  set, or ``OTEL_TRACES_EXPORTER=otlp``: spans recorded lean on the event loop
  (``router.observe.spanrecord``) and shipped in batches to an exporter process of
  their own (``router.observe.spanship``, ``router.observe.spanexport``), which encodes
  them and exports OTLP over ``http/protobuf`` (default) or ``grpc`` as
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` says, with the headers, timeout, compression and
  TLS files of ``OTEL_EXPORTER_OTLP_[TRACES_]*`` (``otlpsending.SendOptions``);
  sampled with the SDK's samplers as ``OTEL_TRACES_SAMPLER`` and
  ``OTEL_TRACES_SAMPLER_ARG`` say (default ``parentbased_always_on``);
* ``OTEL_TRACES_EXPORTER=console``: the SDK with a batch span processor
  printing to stdout.

``OTEL_SDK_DISABLED=true`` turns exporting off whatever else is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from router import __version__
from router.observe.otlpsending import SendOptions, parse_headers
from router.observe.spanrecord import RecordingTracer
from router.observe.spanship import SpanShipper
from router.observe.tracing import PropagatingTracer

__all__ = ["PROTOCOLS", "SAMPLERS", "Telemetry", "TelemetrySettings", "exporter_settings"]

PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318/v1/traces", "grpc": "localhost:4317"}
SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")


@dataclass(frozen=True)
class TelemetrySettings:
    """What the ``OTEL_*`` variables ask for."""

    service_name: str = "mcp-router"
    exporter: str = "none"  # otlp | console | none
    endpoint: str | None = None  # the traces endpoint, full URL or host:port for grpc
    protocol: str = "http/protobuf"
    sampler: str = "parentbased_always_on"
    ratio: float = 1.0
    headers: tuple[tuple[str, str], ...] = ()  # OTEL_EXPORTER_OTLP_HEADERS, metrics send them
    sending: SendOptions = field(default_factory=SendOptions)  # for spans, headers included
    metrics_endpoint: str | None = None  # OTLP metrics; None: not exported
    metrics_interval_ms: int = 60_000

    def __repr__(self) -> str:  # headers often carry API keys
        return (f"TelemetrySettings(service_name={self.service_name!r}, "
                f"exporter={self.exporter!r}, endpoint={self.endpoint!r}, "
                f"protocol={self.protocol!r}, sampler={self.sampler!r}, ratio={self.ratio})")

    @property
    def enabled(self) -> bool:
        return self.exporter != "none"

    @classmethod
    def from_env(cls, env: Mapping[str, str], default_service: str = "mcp-router"
                 ) -> TelemetrySettings:
        """Read the OTel SDK's standard variables; ``ValueError`` names a bad one."""
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                           env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")).strip()
        if protocol not in PROTOCOLS:
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of "
                             f"{', '.join(PROTOCOLS)}, got {protocol!r}")
        endpoint = _traces_endpoint(env, protocol)
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        exporter = env.get("OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none").strip()
        if exporter not in ("otlp", "console", "none"):
            raise ValueError(f"OTEL_TRACES_EXPORTER must be otlp, console or none, "
                             f"got {exporter!r}")
        if exporter == "otlp" and endpoint is None:
            endpoint = DEFAULT_ENDPOINTS[protocol]
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            exporter = "none"
        sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip()
        if sampler not in SAMPLERS:
            raise ValueError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}, "
                             f"got {sampler!r}")
        try:
            ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError as exc:
            raise ValueError("OTEL_TRACES_SAMPLER_ARG must be a number") from exc
        headers = parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
        metrics_endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "").strip() or None
        if metrics_endpoint is None and base:
            metrics_endpoint = base if protocol == "grpc" else base.rstrip("/") + "/v1/metrics"
        if env.get("OTEL_METRICS_EXPORTER", "otlp").strip() == "none":
            metrics_endpoint = None
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            metrics_endpoint = None
        try:
            interval = int(env.get("OTEL_METRIC_EXPORT_INTERVAL", "60000"))
        except ValueError as exc:
            raise ValueError("OTEL_METRIC_EXPORT_INTERVAL must be milliseconds") from exc
        return cls(env.get("OTEL_SERVICE_NAME", default_service), exporter, endpoint,
                   protocol, sampler, min(max(ratio, 0.0), 1.0), headers,
                   SendOptions.from_env(env, protocol), metrics_endpoint, max(interval, 100))


def _traces_endpoint(env: Mapping[str, str], protocol: str) -> str | None:
    """The traces endpoint the variables name, or None; ``ValueError`` names a bad one."""
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if value := env.get(variable, "").strip():
            break
    else:
        return None
    url = urlparse(value)
    try:
        url.port  # noqa: B018 - parsing it is the check: a port that is not a number raises
    except ValueError as exc:
        raise ValueError(f"{variable} has a bad port: {value!r}") from exc
    # grpc also takes a bare host:port (and grpc's own dns:, unix: ... targets).
    if (protocol != "grpc" or url.scheme in ("http", "https")) and not (
            url.scheme in ("http", "https") and url.hostname):
        raise ValueError(f"{variable} must be an http:// or https:// URL with a host, "
                         f"got {value!r}")
    if variable == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" or protocol == "grpc":
        return value
    return value.rstrip("/") + "/v1/traces"  # the signal's path on the base (OTLP spec)


def exporter_settings(settings: TelemetrySettings) -> dict[str, Any]:
    """The exporter process's settings frame (``SpanShipper`` adds how to log)."""
    return {"service_name": settings.service_name, "version": __version__,
            "endpoint": settings.endpoint or DEFAULT_ENDPOINTS[settings.protocol],
            "protocol": settings.protocol, "sending": asdict(settings.sending)}


def _sampler(settings: TelemetrySettings) -> Sampler:
    root: Sampler = {
        "always_on": ALWAYS_ON, "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(settings.ratio),
    }.get(settings.sampler.removeprefix("parentbased_"), ALWAYS_ON)
    return ParentBased(root) if settings.sampler.startswith("parentbased_") else root


@dataclass
class Telemetry:
    """The tracer to use, and how to flush and stop exporting."""

    tracer: trace.Tracer
    flush: Callable[[], bool]
    shutdown: Callable[[], None]

    @classmethod
    def start(cls, settings: TelemetrySettings) -> Telemetry:
        if not settings.enabled:
            return cls(PropagatingTracer(), lambda: True, lambda: None)
        if settings.exporter == "otlp":
            shipper = SpanShipper(exporter_settings(settings))
            return cls(RecordingTracer(_sampler(settings), shipper.submit),
                       lambda: shipper.flush(10.0), shipper.shutdown)
        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name,
                                      "service.version": __version__}),
            sampler=_sampler(settings))
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        return cls(provider.get_tracer("mcp-router", __version__),
                   lambda: provider.force_flush(10_000), provider.shutdown)
