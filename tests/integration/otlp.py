"""A real OTLP/HTTP trace receiver for tests: decodes what exporters POST to /v1/traces.

Both receivers (HTTP and gRPC) keep the headers of every request and can be told to
answer the first ones with a failure (``script``), as a collector under load does.
"""

from __future__ import annotations

import gzip
import ipaddress
import ssl
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    from cryptography import x509  # noqa: PLC0415 - only the TLS tests need it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body as sent, whatever ``Content-Encoding`` compressed it."""
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding != "identity":
        raise ValueError(f"unknown Content-Encoding {encoding}")
    return body


@dataclass
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    links: list[tuple[str, str, dict[str, Any]]]
    status_code: int  # 0 unset, 1 ok, 2 error


@dataclass
class Receiver:
    """Collects every span exported to it; ``url`` is the traces endpoint."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    metrics: dict[str, list[Any]] = field(default_factory=dict)  # name -> data points
    requests: int = 0  # requests taken (their spans are in ``spans``)
    server: ThreadingHTTPServer | None = None
    script: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    retry_after: str | None = None  # the Retry-After header sent with a scripted status
    answered: list[int] = field(default_factory=list)  # the status of every POST
    headers: list[dict[str, str]] = field(default_factory=list)  # of every POST, keys lowered
    scheme: str = "http"

    @property
    def metrics_url(self) -> str:
        assert self.server is not None
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/v1/metrics"

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def add_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    points = list(getattr(metric, kind).data_points) if kind else []
                    self.metrics.setdefault(metric.name, []).extend(points)

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        self.requests += 1
        for resource_spans in request.resource_spans:
            attrs = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    self.spans.append(ReceivedSpan(
                        service=str(attrs.get("service.name")), name=s.name,
                        kind=KINDS.get(s.kind, str(s.kind)), trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(), parent_id=s.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        events=[(e.name, {a.key: _value(a.value) for a in e.attributes})
                                for e in s.events],
                        links=[(link.trace_id.hex(), link.span_id.hex(),
                                {a.key: _value(a.value) for a in link.attributes})
                               for link in s.links],
                        status_code=s.status.code))

    def named(self, prefix: str, **attributes: Any) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name.startswith(prefix)
                and all(s.attributes.get(k) == v for k, v in attributes.items())]

    def start(self, tls: ssl.SSLContext | None = None) -> Receiver:
        """Serve on a free port; with ``tls``, over HTTPS with that server context."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                status = receiver.script.pop(0) if receiver.script else 200
                try:
                    body = _decoded(body, self.headers.get("Content-Encoding", "identity"))
                    if status == 200 and self.path.endswith("/v1/metrics"):
                        receiver.add_metrics(body)
                    elif status == 200:
                        receiver.add(body)
                except Exception:  # noqa: BLE001 -- answer 400 to undecodable requests
                    status = 400
                receiver.answered.append(status)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                if status != 200 and receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        # A short poll: stop() waits for serve_forever to look up, at the end of every test.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class GrpcReceiver:
    """The same, for OTLP over gRPC; ``endpoint`` is ``host:port``."""

    collected: Receiver = field(default_factory=Receiver)
    server: Any = None
    port: int = 0
    script: list[Any] = field(default_factory=list)  # grpc.StatusCodes to answer first
    answered: list[str] = field(default_factory=list)  # the status name of every call
    metadata: list[dict[str, str]] = field(default_factory=list)  # of every call

    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, credentials: Any = None) -> GrpcReceiver:
        """Serve on a free port; with ``grpc.ServerCredentials``, over TLS."""
        from concurrent import futures  # noqa: PLC0415

        import grpc  # noqa: PLC0415
        from opentelemetry.proto.collector.trace.v1 import (  # noqa: PLC0415
            trace_service_pb2_grpc,
        )

        receiver = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                receiver.metadata.append(dict(context.invocation_metadata()))
                if receiver.script:
                    code = receiver.script.pop(0)
                    receiver.answered.append(code.name)
                    context.abort(code, "scripted failure")
                receiver.answered.append("OK")
                receiver.collected.add(request.SerializeToString())
                return ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        if credentials is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
            self.scheme = "https"
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace=None)
