"""The router's metrics through OTLP, when configured, next to ``/metrics``.

The Prometheus registry stays the one source of truth.  Counters and gauges
are bridged with observable instruments that read the registry when the
periodic reader collects (nothing added to the message path); histograms are
mirrored as they are observed, which costs only while OTLP export is on.
Names are the Prometheus family names (counters without ``_total``, which the
OTLP to Prometheus mapping adds back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from router import __version__
from router.observe.metrics import Metrics
from router.observe.telemetry import TelemetrySettings

__all__ = ["start_metrics_export"]


def _exporter(settings: TelemetrySettings) -> MetricExporter:
    headers = dict(settings.headers) or None
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: PLC0415 - lazy
            OTLPMetricExporter as GrpcExporter,
        )

        endpoint = settings.metrics_endpoint or "localhost:4317"
        return GrpcExporter(endpoint=endpoint.removeprefix("http://"),
                            insecure=not endpoint.startswith("https://"), headers=headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415 - lazy
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter(endpoint=settings.metrics_endpoint, headers=headers)


def _observer(metrics: Metrics, family: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        for metric in metrics.registry.collect():
            if metric.name != family:
                continue
            for sample in metric.samples:
                if sample.name in (family, f"{family}_total"):
                    yield Observation(sample.value, dict(sample.labels))
    return observe


def start_metrics_export(metrics: Metrics, settings: TelemetrySettings) -> Callable[[], None]:
    """Export ``metrics`` periodically over OTLP; returns the shutdown function."""
    reader = PeriodicExportingMetricReader(_exporter(settings),
                                           export_interval_millis=settings.metrics_interval_ms)
    provider = MeterProvider(
        resource=Resource.create({"service.name": settings.service_name,
                                  "service.version": __version__}),
        metric_readers=[reader])
    meter = provider.get_meter("mcp-router", __version__)
    histograms = {}
    for metric in metrics.registry.collect():
        description = metric.documentation
        if metric.type == "counter":
            meter.create_observable_counter(metric.name, [_observer(metrics, metric.name)],
                                            description=description)
        elif metric.type == "gauge":
            meter.create_observable_gauge(metric.name, [_observer(metrics, metric.name)],
                                          description=description)
        elif metric.type == "histogram":
            histograms[metric.name] = meter.create_histogram(metric.name, unit="s",
                                                             description=description)

    def mirror(name: str, value: float) -> None:
        histogram = histograms.get(name)
        if histogram is not None:
            histogram.record(value)

    metrics.mirrors.append(mirror)
    return provider.shutdown
