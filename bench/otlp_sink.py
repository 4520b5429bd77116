"""A real OTLP trace receiver for the benchmark, in a process of its own.

Accepts OTLP/HTTP (``POST /v1/traces``) and OTLP/gRPC (``TraceService/Export``),
decodes every request with the protobuf classes a collector uses, and counts
the spans: in all, by kind, and those that do not decode as the router's
(a trace id, a span id, a parent for every router span, a CONSUMER named
``process ...`` or a PRODUCER named ``publish ...``).  Decoding here is the
collector's cost, kept off the router's core, as a real collector would be.

    python bench/otlp_sink.py     # prints {"http": PORT, "grpc": PORT}; GET /stats; ends on EOF

``Sink`` starts and reads it from the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans = 0
        self.requests = 0
        self.bad = 0
        self.kinds: Counter[str] = Counter()

    def add(self, request: Any) -> None:
        spans = bad = 0
        kinds: Counter[str] = Counter()
        for resource_spans in request.resource_spans:
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    spans += 1
                    kind = KINDS.get(s.kind, str(s.kind))
                    kinds[kind] += 1
                    prefix = {"CONSUMER": "process ", "PRODUCER": "publish "}.get(kind)
                    if len(s.trace_id) != 16 or len(s.span_id) != 8 \
                            or len(s.parent_span_id) != 8 or prefix is None \
                            or not s.name.startswith(prefix) or s.end_time_unix_nano == 0:
                        bad += 1
        with self.lock:
            self.requests += 1
            self.spans += spans
            self.bad += bad
            self.kinds.update(kinds)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"spans": self.spans, "requests": self.requests, "bad": self.bad,
                    "kinds": dict(self.kinds)}


def serve() -> None:
    import grpc  # noqa: PLC0415 -- only in the sink process
    from opentelemetry.proto.collector.trace.v1 import (  # noqa: PLC0415
        trace_service_pb2,
        trace_service_pb2_grpc,
    )

    tally = Tally()
    answer = trace_service_pb2.ExportTraceServiceResponse()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            tally.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            self.reply(answer.SerializeToString(), "application/x-protobuf")

        def do_GET(self) -> None:
            self.reply(json.dumps(tally.stats()).encode(), "application/json")

        def reply(self, payload: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            tally.add(request)
            return answer

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"http": http.server_address[1], "grpc": grpc_port}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or exits)
    server.stop(grace=None)
    http.shutdown()


class Sink:
    """The sink process, seen from the benchmark."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 -- this very file
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None  # noqa: S101 -- PIPE asked for
        ports = json.loads(self.process.stdout.readline())
        self.http_url = f"http://127.0.0.1:{ports['http']}/v1/traces"
        self.grpc_endpoint = f"http://127.0.0.1:{ports['grpc']}"
        self._stats_url = f"http://127.0.0.1:{ports['http']}/stats"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self._stats_url, timeout=10) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(10)


if __name__ == "__main__":
    serve()
