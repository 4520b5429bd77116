"""``mcp-router publish``: one message to the ingress exchange, traced like a service's.

The message is published persistent, mandatory and confirmed (an unroutable
one fails the command), with a producer span whose context travels in the
headers, so ``follow`` and Jaeger show it like any service's message.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from opentelemetry.trace import SpanKind

from router.broker.amqp import broker_user, connect
from router.broker.servicelinks import ingress_exchange, publish_persistent
from router.config.configuration import Config
from router.core.envelope import Properties
from router.observe.conventions import publish_attributes, publish_name
from router.observe.telemetry import Telemetry, TelemetrySettings
from router.observe.tracing import inject, span_trace_id
from router.tools.terminal import fail

__all__ = ["run_publish"]


def message_body(args: argparse.Namespace) -> bytes | str:
    """The body to publish (bytes), or why it cannot be (str)."""
    if args.raw:
        try:
            return sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
        except OSError as exc:
            return f"cannot read {args.body}: {exc.strerror or exc}"
    text = sys.stdin.read() if args.body == "-" else args.body
    try:
        json.loads(text)
    except ValueError as exc:
        return f"the body is not JSON: {exc} (--raw sends a file as it is)"
    return text.encode("utf-8", "surrogateescape")


async def run_publish(args: argparse.Namespace, config: Config,
                      settings: TelemetrySettings) -> int:
    """Publish and print the message id and trace id; 1 when the broker refuses it."""
    body = message_body(args)
    if isinstance(body, str):
        return fail(body)
    headers: dict[str, object] = {}
    if args.schema_version is not None:
        headers["x-schema-version"] = args.schema_version
    telemetry = Telemetry.start(settings)
    exchange_name = config.topology.ingress.exchange
    routing_key = args.routing_key or args.message_type
    span = telemetry.tracer.start_span(publish_name(exchange_name), kind=SpanKind.PRODUCER,
                                       attributes=publish_attributes(
                                           exchange_name, routing_key,
                                           message_id=args.message_id, body_size=len(body)))
    headers.update(inject(span))
    message = Properties(content_type=args.content_type, type=args.message_type,
                         message_id=args.message_id or str(uuid.uuid4()), headers=headers,
                         user_id=broker_user(args.amqp_url))
    connection = await connect(args.amqp_url, "mcp-router publish-cli")
    try:
        exchange = await ingress_exchange(connection, exchange_name)
        await publish_persistent(exchange, routing_key, body, message, confirm_timeout=None)
    except Exception as exc:  # noqa: BLE001 - reported to the user, not raised
        hint = " (mcp-router apply, or run, declares the topology)" \
            if "NOT_FOUND" in str(exc) else ""
        return fail(f"publish failed: {exc}{hint}")
    finally:
        span.end()
        telemetry.shutdown()
        await connection.close()
    print(f"published {message.message_id} type={args.message_type} "
          f"trace_id={span_trace_id(span)}")
    return 0
