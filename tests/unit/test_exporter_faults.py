"""The real exporter process when things go wrong: it logs as the router does (format and
level), says in one line why it cannot start, and a shipper whose exporter keeps dying
backs off its restarts while ``submit`` goes on appending."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from router.observe.logs import AMQP_LOGGERS, configure
from router.observe.spanrecord import RecordingTracer, SpanRecord
from router.observe.spanship import FIRST_WAIT, SpanShipper
from router.observe.telemetry import TelemetrySettings, exporter_settings
from tests.integration.otlp import Receiver, certificate

WINDOW = 3.0  # seconds of spans submitted to a shipper whose exporter cannot start


@pytest.fixture
def router_logs() -> Iterator[Callable[[str, str], None]]:
    """``logs.configure`` as the router's entry point calls it; the test's logging restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in AMQP_LOGGERS}
    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)


def _record() -> SpanRecord:
    records: list[SpanRecord] = []
    RecordingTracer(ALWAYS_ON, records.append).start_span("publish q0").end()
    return records[0]


def _json_lines(err: str) -> list[dict[str, Any]]:
    """Every line on stderr, each of which must be one JSON object."""
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_the_exporter_process_logs_in_the_routers_format_and_level(
        receiver: Receiver, router_logs: Callable[[str, str], None],
        capfd: pytest.CaptureFixture[str]) -> None:
    """With the router logging JSON at ERROR, the exporter's refusal is a JSON line on stderr
    and its retry warning is not printed at all."""
    router_logs("ERROR", "json")
    receiver.script, receiver.retry_after = [503, 400], "0"
    shipper = SpanShipper(exporter_settings(TelemetrySettings.from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url})))
    try:
        shipper.submit(_record())
        assert not shipper.flush(20)
    finally:
        shipper.shutdown(10)

    lines = _json_lines(capfd.readouterr().err)
    assert receiver.answered == [503, 400]
    assert [(line["level"], line["logger"]) for line in lines] == [("error", "router.spanexport")]
    assert "not retried: HTTP 400" in lines[0]["message"]


def _gone(tmp_path: Path, protocol: str) -> tuple[dict[str, Any], str, Path]:
    """Exporter settings checked at start-up whose TLS file is deleted afterwards: the
    settings frame, the variable that named the file, and the file."""
    cert, key = certificate(tmp_path, "client")
    endpoint = "https://127.0.0.1:1" + ("" if protocol == "grpc" else "/v1/traces")
    settings = TelemetrySettings.from_env({
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(key),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(cert),
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(cert)})
    gone = key if protocol == "grpc" else cert
    gone.unlink()
    variable = ("OTEL_EXPORTER_OTLP_CLIENT_KEY" if protocol == "grpc"
                else "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
    return exporter_settings(settings), variable, gone


def _submitting(shipper: SpanShipper, seconds: float) -> tuple[float, list[float]]:
    """Submit spans for ``seconds``, a span every millisecond: the longest submit call, and
    when each restart was first seen."""
    record, longest, seen = _record(), 0.0, []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        shipper.submit(record)
        longest = max(longest, time.monotonic() - now)
        seen.extend([now] * (shipper.restarts - len(seen)))
        time.sleep(0.001)
    return longest, seen


def _backs_off(config: dict[str, Any]) -> SpanShipper:
    """A shipper fed spans for ``WINDOW`` seconds while its exporter cannot start: its
    restarts back off (at once, then after 1 s, then 2 s: two in the window, where a hot
    loop made ten), its spans are dropped and counted, and submit never waits for any of it."""
    shipper = SpanShipper(config)
    try:
        longest, seen = _submitting(shipper, WINDOW)
    finally:
        shipper.shutdown(10)
    assert 1 <= len(seen) <= 3
    assert all(later - earlier >= FIRST_WAIT - 0.05 for earlier, later in pairwise(seen))
    assert shipper.dropped > 0
    assert longest < 0.5  # not a timing: a submit that waited on a restart would take >= 1 s
    return shipper


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_tls_file_gone_after_start_up_is_named_and_restarts_back_off(
        tmp_path: Path, protocol: str, capfd: pytest.CaptureFixture[str]) -> None:
    """A client key (gRPC) or CA file (HTTPS) deleted after the router checked it: each
    exporter process that starts says so in one error line naming the variable and the file,
    with no traceback, and the shipper does not start them in a hot loop."""
    config, variable, gone = _gone(tmp_path, protocol)

    shipper = _backs_off(config)

    err = capfd.readouterr().err
    named = [line for line in err.splitlines()
             if "ERROR router.spanexport: cannot export spans" in line]
    assert 1 <= len(named) <= shipper.restarts + 1
    assert all(f"{variable} names {str(gone)!r}, which cannot be read" in line
               for line in named)
    assert "Traceback" not in err


@pytest.mark.parametrize(("sending", "why"), [
    ({"compression": "brotli"}, "the compression must be one of none, gzip, deflate"),
    ({"timeout": "soon"}, "the timeout must be a positive number of seconds, got 'soon'"),
    ({"certificates": "/ca.pem"}, "TypeError: "),  # a setting this exporter does not know
])
def test_a_setting_the_exporter_refuses_is_one_line_at_its_start(
        sending: dict[str, Any], why: str, capfd: pytest.CaptureFixture[str]) -> None:
    """A settings frame the router's own checks did not make (another version's, say): the
    exporter says why in one line and exits with status 2, before any batch."""
    shipper = SpanShipper({"service_name": "s", "version": "9", "endpoint": "127.0.0.1:1",
                           "protocol": "grpc", "sending": sending})
    try:
        assert shipper._process is not None
        status = shipper._process.wait(20)
    finally:
        shipper.shutdown(10)

    err = capfd.readouterr().err
    assert status == 2
    assert err.count("ERROR router.spanexport: cannot export spans: ") == 1
    assert f"cannot export spans: {why}" in err
    assert "Traceback" not in err


def test_a_batch_that_fails_unforeseen_is_logged_and_the_process_lives_on(
        receiver: Receiver, capfd: pytest.CaptureFixture[str]) -> None:
    """A header value http.client cannot encode (a euro sign, past the start-up checks) fails
    each batch with an exception: logged, flush says failed, and the process is not
    restarted; a batch after it is still tried."""
    options = TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url})
    config = exporter_settings(replace(options, sending=replace(
        options.sending, headers=(("api-key", "\u20ac"),))))
    shipper = SpanShipper(config)
    try:
        for _ in range(2):
            shipper.submit(_record())
            assert not shipper.flush(20)
        restarts = shipper.restarts
    finally:
        shipper.shutdown(10)

    assert restarts == 0
    assert capfd.readouterr().err.count("spans not exported: the batch failed") == 2
