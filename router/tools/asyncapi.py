"""An AsyncAPI 3.1.0 document of a configuration: what flows where, and in what shape.

``asyncapi_document`` is pure: a loaded ``Config`` (and the broker URL, for
``servers``) in, a JSON-compatible dict out, the same for the same input. The
document is self-contained (every ``$ref`` points inside it) and valid against
the official AsyncAPI 3.1.0 JSON Schema (tests/data/asyncapi). Channels and
operations come from ``router.tools.channels``; the schemas, bundled with their
references rewritten, from ``router.tools.bundle``; this module adds ``info``,
``servers``, the messages (``<Type>.v<N>`` per schema version, and
``DeadLetter``) and the header schemas of docs/SPEC.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from router import __version__
from router.config.configuration import Config
from router.core import headers as xmcp
from router.core.outcome import Reason
from router.tools.bundle import SCHEMA_FORMAT, Bundle
from router.tools.channels import AMQP_BINDING_VERSION, DEAD_LETTER, channels_and_operations, ref

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "broker_server"]

ASYNCAPI_VERSION = "3.1.0"
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def broker_server(url: str) -> dict[str, Any]:
    """The AsyncAPI Server Object of a broker URL; user and password are left out."""
    parts = urlsplit(url)
    tls = parts.scheme == "amqps"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"  # IPv6
    vhost = unquote(parts.path[1:]) if parts.path not in ("", "/") else "/"
    return {
        "host": f"{host}:{parts.port or (5671 if tls else 5672)}",
        "pathname": vhost if vhost.startswith("/") else f"/{vhost}",
        "protocol": "amqps" if tls else "amqp",
        "protocolVersion": "0.9.1",
        "title": "RabbitMQ",
        "description": f"The broker, virtual host `{vhost}`.",
    }


def _vhost(server: Mapping[str, Any]) -> str:
    path = str(server["pathname"])
    return "/" if path == "/" else path[1:]


_TEXT: dict[str, Any] = {"type": "string"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}


def _headers_schemas() -> dict[str, Any]:
    return {"MessageHeaders": _routed_headers(), "DeadLetterHeaders": _dead_letter_headers()}


def _routed_headers() -> dict[str, Any]:
    text = _TEXT
    return {
        "type": "object",
        "description": "AMQP headers of a message (see docs/SPEC.md). The AMQP properties "
                       "`type` (the message type), `content_type` (application/json), "
                       "`message_id` and `user_id` (the broker-validated publisher) travel "
                       "beside them.",
        "properties": {
            "x-schema-version": {"type": "integer", "minimum": 1,
                                 "description": "The schema version of the body; absent "
                                                "means the newest."},
            "traceparent": {"type": "string", "pattern": _TRACEPARENT,
                            "description": "W3C trace context. On a routed copy, a fresh "
                                           "one whose parent is the router's span."},
            "tracestate": {"type": "string", "description": "W3C trace state."},
            xmcp.ROUTE: {**text, "description": "Routed copies: the route that sent it."},
            xmcp.PUBLISHER: {**text, "description": "Routed copies: the publisher's "
                                                       "broker-validated user_id."},
            xmcp.BRANCH: {**text, "description": "Routed copies to one of a route's "
                                                    "alternatives or shadows: its name."},
            xmcp.SHADOW: {"type": "boolean", "description": "Shadow copies: true (a "
                                                               "consumer on trial)."},
        },
    }


def _dead_letter_headers() -> dict[str, Any]:
    text, count = _TEXT, _COUNT
    reasons = [reason.value for reason in Reason]
    return {
        "type": "object",
        "description": "A dead letter keeps the original body, properties and headers, plus:",
        "properties": {
            xmcp.REASON: {"type": "string", "enum": reasons,
                             "description": "Why it was dead-lettered. Absent when the "
                                            "ingress queue's delivery limit dead-lettered it "
                                            "(x-death reason delivery_limit)."},
            xmcp.ERROR: {**text, "description": "Human-readable detail (for schema_invalid: "
                                                   "JSON pointer and what failed)."},
            xmcp.ORIGINAL_EXCHANGE: {**text, "description": "Where it was first published."},
            xmcp.ORIGINAL_ROUTING_KEY: {**text,
                                           "description": "Its routing key there."},
            xmcp.ATTEMPTS: {**count, "description": "Delivery attempts made."},
            xmcp.DEAD_LETTERED_AT: {"type": "string", "format": "date-time",
                                       "description": "When, ISO 8601 UTC."},
            xmcp.ROUTE: {**text, "description": "An undeliverable copy: its route."},
            xmcp.DESTINATION_EXCHANGE: {**text, "description": "An undeliverable copy: "
                                                                  "where it was going."},
            xmcp.DESTINATION_ROUTING_KEY: {**text, "description": "... with this key."},
            xmcp.REPLAYS: {**count, "description": "How often `mcp-router dlq replay` "
                                                      "sent it back."},
        },
    }


def _messages(config: Config, schemas: Bundle) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for message_type, versions in sorted(config.registry.types.items()):
        newest = versions[-1].version
        for version in versions:
            rel = f"{message_type}/v{version.version}.json"
            schema = schemas.documents[rel]
            title = schema.get("title") if isinstance(schema, dict) else None
            headers: dict[str, Any] = {
                "type": "object",
                "allOf": [ref("components", "schemas", "MessageHeaders")],
                "properties": {"x-schema-version": {"const": version.version}},
            }
            if version.version != newest:  # absent means the newest, so older ones must say
                headers["required"] = ["x-schema-version"]
            message: dict[str, Any] = {
                "name": message_type,
                "title": f"{message_type} v{version.version}",
                "contentType": "application/json",
                "headers": headers,
                "payload": schemas.payload(rel),
                "correlationId": ref("components", "correlationIds", "traceparent"),
                "bindings": {"amqp": {"messageType": message_type,
                                      "bindingVersion": AMQP_BINDING_VERSION}},
                "x-schema-version": version.version,
            }
            if isinstance(title, str):
                message["summary"] = title
            if isinstance(schema, dict) and isinstance(schema.get("description"), str):
                message["description"] = schema["description"]
            messages[f"{message_type}.v{version.version}"] = message
    messages[DEAD_LETTER] = {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A message the router could not deliver, with the reason.",
        "description": "The original body and properties, unchanged (the body may not be "
                       "JSON: see x-mcp-reason malformed). `mcp-router dlq` lists, replays "
                       "and purges them.",
        "headers": ref("components", "schemas", "DeadLetterHeaders"),
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {}},
        "correlationId": ref("components", "correlationIds", "traceparent"),
    }
    return messages


def asyncapi_document(config: Config, *, amqp_url: str, title: str | None = None,
                      version: str = "1.0.0") -> dict[str, Any]:
    """The AsyncAPI 3.1.0 document of ``config`` on the broker at ``amqp_url``."""
    registry = config.registry
    versions = {(t, v.version) for t, vs in registry.types.items() for v in vs}
    schemas = Bundle(registry.documents, versions)
    messages = _messages(config, schemas)
    server = broker_server(amqp_url)
    channels, operations = channels_and_operations(config.topology, messages, _vhost(server))
    name = config.directory.resolve().name or "mcp-router"
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or f"{name} message flows",
            "version": version,
            "description": f"The message flows of `{name}` through mcp-router: "
                           "services publish to the ingress exchange, the router validates "
                           "each message against its JSON Schema and sends a copy to every "
                           "route that matches; what it cannot deliver goes to the "
                           f"dead-letter exchange. Generated by mcp-router {__version__}.",
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": server},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {**_headers_schemas(), **schemas.shared()},
            "messages": messages,
            "correlationIds": {"traceparent": {
                "description": "W3C trace context: publisher, router and consumer spans of a "
                               "message share its trace id.",
                "location": "$message.header#/traceparent"}},
        },
    }
