"""OTLP/gRPC for the exporter process: encoded requests sent with ``grpc``'s public API.

What the SDK's ``OTLPSpanExporter`` (grpc) does with a request it has encoded:
one channel to the endpoint's ``host:port``, plaintext unless the endpoint is
``https://`` (then TLS, verified against the configured CA bundle or the
system's, with an optional client key and certificate), compressed as
configured, the headers sent as metadata (keys in lower case, as gRPC wants
them), and ``otlpsending.deliver``'s retries.  The bytes go out as they are:
the call's request serializer is the identity.  CANCELLED, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are
transient, with the wait a ``google.rpc.retryinfo-bin`` trailer asks for; after
UNAVAILABLE the channel is made anew, so the next attempt connects at once
rather than after gRPC's own reconnection backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from router.observe.otlpsending import Attempt, Refused, Retry, SendOptions, Sent, deliver

__all__ = ["METHOD", "RETRYABLE", "GrpcSender", "target"]

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
COMPRESSION = {"none": grpc.Compression.NoCompression, "gzip": grpc.Compression.Gzip,
               "deflate": grpc.Compression.Deflate}
RETRY_INFO = "google.rpc.retryinfo-bin"


def target(endpoint: str) -> tuple[str, bool]:
    """The endpoint's ``host:port``, and whether it asks for TLS (``https://``)."""
    url = urlparse(endpoint)
    return (url.netloc or endpoint), url.scheme == "https"


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()


def _identity(payload: bytes) -> bytes:
    return payload


def _asked_delay(error: Any) -> float | None:
    """The wait a ``RetryInfo`` trailer asks for, in seconds."""
    for key, value in error.trailing_metadata() or ():
        if key == RETRY_INFO:
            delay = RetryInfo.FromString(value).retry_delay
            return float(delay.seconds + delay.nanos / 1e9)
    return None


class GrpcSender:
    """Sends encoded requests to one OTLP/gRPC receiver; ``OSError``: a TLS file unreadable."""

    def __init__(self, endpoint: str, options: SendOptions, user_agent: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._endpoint, self._timeout, self._sleep = endpoint, options.timeout, sleep
        self._target, secure = target(endpoint)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(options.certificate),
            private_key=_read(options.client_key),
            certificate_chain=_read(options.client_certificate)) if secure else None
        self._channel_options = (("grpc.primary_user_agent", user_agent),)
        self._compression = COMPRESSION[options.compression]
        self._metadata = tuple((key.lower(), value) for key, value in options.headers)
        self._connect()

    def _connect(self) -> None:
        if self._credentials is None:
            self._channel = grpc.insecure_channel(
                self._target, options=self._channel_options, compression=self._compression)
        else:
            self._channel = grpc.secure_channel(
                self._target, self._credentials, options=self._channel_options,
                compression=self._compression)
        self._export = self._channel.unary_unary(
            METHOD, request_serializer=_identity,
            response_deserializer=ExportTraceServiceResponse.FromString)

    def send(self, payload: bytes) -> bool:
        return deliver(lambda seconds: self._attempt(payload, seconds), self._timeout,
                       self._endpoint, self._sleep)

    def _attempt(self, payload: bytes, seconds: float) -> Attempt:
        try:
            self._export(payload, timeout=seconds, metadata=self._metadata)
        except grpc.RpcError as error:
            code = error.code()
            reason = f"{code.name}: {error.details()}"
            if code not in RETRYABLE:
                return Refused(reason)
            if code is grpc.StatusCode.UNAVAILABLE:
                self._channel.close()
                self._connect()
            return Retry(reason, _asked_delay(error))
        return Sent()

    def close(self) -> None:
        self._channel.close()
