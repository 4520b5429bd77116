"""The exporter process's OTLP senders against real receivers (HTTP, gRPC, TLS): what the
SDK's exporters honour (headers, compression, certificates, retries) arrives as they send it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from router.observe.otlphttp import HttpSender, retry_after
from router.observe.otlpsending import SendOptions
from router.observe.otlpwire import encode_prefix, encode_request
from router.observe.spanrecord import RecordingTracer, SpanRecord
from router.observe.telemetry import Telemetry, TelemetrySettings
from tests.integration.otlp import GrpcReceiver, Receiver, certificate


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    r = GrpcReceiver().start()
    yield r
    r.stop()


def _export(env: dict[str, str], count: int = 3) -> bool:
    """Start telemetry from ``env``, end ``count`` spans, flush; True if all were exported."""
    telemetry = Telemetry.start(TelemetrySettings.from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                                            "OTEL_SERVICE_NAME": "exported",
                                                            **env}))
    try:
        for i in range(count):
            telemetry.tracer.start_span(f"publish q{i}", kind=trace.SpanKind.PRODUCER).end()
        return telemetry.flush()
    finally:
        telemetry.shutdown()


def _assert_once(receiver: Receiver, count: int = 3) -> None:
    assert sorted(s.name for s in receiver.spans) == [f"publish q{i}" for i in range(count)]
    assert len({s.span_id for s in receiver.spans}) == count
    assert {s.service for s in receiver.spans} == {"exported"}


def test_headers_arrive_with_every_request(receiver: Receiver) -> None:
    """The traces headers (percent-decoded) win over the general ones; the body is protobuf."""
    assert _export({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
                    "OTEL_EXPORTER_OTLP_HEADERS": "api-key=general",
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Api-Key=s3cret,x-tenant=a%20b"})

    [headers] = receiver.headers
    assert (headers["api-key"], headers["x-tenant"]) == ("s3cret", "a b")
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["user-agent"].startswith("mcp-router/")
    assert "content-encoding" not in headers
    _assert_once(receiver)


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_arrive_decoded(receiver: Receiver, compression: str) -> None:
    """OTEL_EXPORTER_OTLP_COMPRESSION compresses the body and names it in Content-Encoding."""
    assert _export({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url,
                    "OTEL_EXPORTER_OTLP_COMPRESSION": compression})

    assert receiver.headers[0]["content-encoding"] == compression
    _assert_once(receiver)


def test_unavailable_twice_then_accepted_is_exported_once(receiver: Receiver) -> None:
    """503, 503 (Retry-After: 0), then 200: the batch arrives once, on the third request."""
    receiver.script, receiver.retry_after = [503, 503], "0"

    assert _export({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url})

    assert receiver.answered == [503, 503, 200]
    assert receiver.requests == 1
    _assert_once(receiver)


def test_a_bad_request_is_not_retried(receiver: Receiver,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    """A 400 fails the export at once, with an error logged; flush says so."""
    receiver.script = [400]

    assert not _export({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url})

    assert receiver.answered == [400]
    assert receiver.spans == []
    assert "not retried: HTTP 400" in capfd.readouterr().err


def test_grpc_unavailable_then_ok_is_exported_once(grpc_receiver: GrpcReceiver) -> None:
    """UNAVAILABLE, then OK after the SDK's backoff (about a second): the batch arrives once,
    with the headers as metadata."""
    grpc_receiver.script = [grpc.StatusCode.UNAVAILABLE]

    assert _export({"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=s3cret",
                    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})

    assert grpc_receiver.answered == ["UNAVAILABLE", "OK"]
    assert grpc_receiver.metadata[-1]["api-key"] == "s3cret"
    assert grpc_receiver.metadata[-1]["user-agent"].startswith("mcp-router/")
    _assert_once(grpc_receiver.collected)


def test_grpc_invalid_argument_is_not_retried(grpc_receiver: GrpcReceiver) -> None:
    """A status that is not transient fails the export on the first call."""
    grpc_receiver.script = [grpc.StatusCode.INVALID_ARGUMENT]

    assert not _export({"OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})

    assert grpc_receiver.answered == ["INVALID_ARGUMENT"]
    assert grpc_receiver.collected.spans == []


def _tls_env(tmp_path: Path) -> tuple[dict[str, str], tuple[Path, Path], Path]:
    """Certificates for a receiver and a client, and the variables that name them."""
    server, client = certificate(tmp_path, "receiver"), certificate(tmp_path, "client")
    return ({"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(server[0]),
             "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(client[0]),
             "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(client[1])}, server, client[0])


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A receiver's TLS, without client certificates."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https_with_a_private_ca_and_a_client_certificate(tmp_path: Path) -> None:
    """The CA file verifies the receiver; the client certificate and key pass its mutual TLS."""
    env, (cert, key), client = _tls_env(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    receiver = Receiver().start(tls=context)
    try:
        assert _export({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.url, **env})
    finally:
        receiver.stop()

    _assert_once(receiver)


def test_grpc_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """An https:// gRPC endpoint is a TLS channel with the same certificates."""
    env, (cert, key), client = _tls_env(tmp_path)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())],
                                              root_certificates=client.read_bytes(),
                                              require_client_auth=True)
    receiver = GrpcReceiver().start(credentials)
    try:
        assert receiver.endpoint.startswith("https://")
        assert _export({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", **env})
    finally:
        receiver.stop()

    _assert_once(receiver.collected)


def _payload() -> bytes:
    """One span's encoded export request, as the exporter process sends it."""
    records: list[SpanRecord] = []
    RecordingTracer(ALWAYS_ON, records.append).start_span("publish q0").end()
    return encode_request(encode_prefix({"service.name": "exported"}, "mcp-router", "9"), records)


def test_retries_back_off_exponentially_with_jitter_within_the_timeout(
        receiver: Receiver) -> None:
    """Without Retry-After the waits are 1 s and 2 s (±20 %); a wait past the timeout ends
    the export instead (the sleep is injected: nothing waits)."""
    waits: list[float] = []
    receiver.script = [503, 503]
    sender = HttpSender(receiver.url, SendOptions(), "test", sleep=waits.append)

    assert sender.send(_payload())
    assert receiver.answered == [503, 503, 200]
    assert [s.name for s in receiver.spans] == ["publish q0"]
    assert 0.8 <= waits[0] <= 1.2
    assert 1.6 <= waits[1] <= 2.4

    waits.clear()
    receiver.script = [503] * 6
    short = HttpSender(receiver.url, SendOptions(timeout=1.5), "test", sleep=waits.append)
    assert not short.send(_payload())
    assert len(waits) == 1  # the second wait (>= 1.6 s) would end past the 1.5 s timeout


def test_retry_after_in_seconds_or_as_a_date() -> None:
    """Retry-After is read as delay-seconds or an HTTP-date; anything else asks nothing."""
    now = 1_700_000_000.0
    assert retry_after("3", now) == 3.0
    assert retry_after(format_datetime(datetime.fromtimestamp(now + 5, UTC), usegmt=True),
                       now) == 5.0
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None
    assert retry_after("-4", now) == 0.0


@pytest.mark.parametrize(("name", "value"), [("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli"),
                                             ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "soon"),
                                             ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
                                             ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/no/such.key"),
                                             ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=%E2%82%AC"),
                                             ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=a%0Ab"),
                                             ("OTEL_EXPORTER_OTLP_HEADERS", "a%0Ab=c")])
def test_bad_sending_options_are_refused_by_name(name: str, value: str) -> None:
    """A compression, timeout, header or TLS file the senders cannot use is an error at
    startup that names the variable (never a header's value: it may be a secret)."""
    with pytest.raises(ValueError, match=name) as refused:
        SendOptions.from_env({name: value})

    assert "\u20ac" not in str(refused.value)


def test_grpc_refuses_header_names_http_takes() -> None:
    """gRPC metadata keys are narrower than HTTP tokens: ``x!y`` is refused only for grpc."""
    env = {"OTEL_EXPORTER_OTLP_HEADERS": "x!y=1"}

    assert SendOptions.from_env(env).headers == (("x!y", "1"),)
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_HEADERS names a header grpc"):
        SendOptions.from_env(env, "grpc")


def test_a_ca_file_gone_while_exporting_over_https_is_named_in_the_refusal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``requests`` reads the TLS files for every request: once the CA file is gone each
    export is refused, and the error names the variable and the file."""
    cert, key = certificate(tmp_path, "receiver")
    options = SendOptions.from_env({"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(cert)})
    receiver = Receiver().start(tls=_server_context(cert, key))
    try:
        sender = HttpSender(receiver.url, options, "test")
        assert sender.send(_payload())
        cert.unlink()

        assert not sender.send(_payload())
    finally:
        receiver.stop()

    assert f"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE names {str(cert)!r}, which cannot be read" \
        in caplog.text


def test_traces_variables_win_over_the_general_ones(tmp_path: Path) -> None:
    """Each OTEL_EXPORTER_OTLP_TRACES_* replaces its OTEL_EXPORTER_OTLP_* counterpart."""
    ca = tmp_path / "ca.pem"
    ca.write_text("a CA bundle")
    options = SendOptions.from_env({
        "OTEL_EXPORTER_OTLP_TIMEOUT": "3", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "7",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP", "OTEL_EXPORTER_OTLP_CERTIFICATE": "/none.pem",
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(ca),
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "c=s3cret"})

    assert (options.timeout, options.compression, options.certificate) == (7.0, "gzip", str(ca))
    assert options.headers == (("c", "s3cret"),)
    assert "s3cret" not in repr(options)
