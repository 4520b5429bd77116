"""``mcp-router asyncapi``: an AsyncAPI 3.1.0 document, valid and self-contained."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import ValidationError

from router.config.configuration import Config, load_config
from router.tools.asyncapi import asyncapi_document, broker_server
from router.tools.bundle import SCHEMA_FORMAT
from tests.unit.conftest import BASE_TOPOLOGY, LoadConfig

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "data" / "asyncapi" / "3.1.0-without-id.json"
URL = "amqp://guest:s3cret@127.0.0.1:5672/"

AMOUNT = {"type": "number", "minimum": 0}

#: Schemas with every kind of reference the registry allows.
RICH_SCHEMAS: dict[str, Any] = {
    "_shared/defs.json": {
        "$defs": {"amount": AMOUNT, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                  "money": {"type": "object", "properties": {
                      "amount": {"$ref": "#/$defs/amount"},  # inside the shared file
                      "currency": {"$ref": "#/$defs/currency"}}}},
    },
    "Order/v1.json": {"type": "object", "required": ["id"],
                      "properties": {"id": {"type": "string"}}},
    "Order/v2.json": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "mcp://schemas/Order/v2.json",
        "title": "Order v2",
        "description": "An order with a total.",
        "type": "object",
        "required": ["id", "total"],
        "properties": {
            "id": {"type": "string"},
            "total": {"$ref": "../_shared/defs.json#/$defs/money"},
            "tax": {"$ref": "mcp://schemas/_shared/defs.json#/$defs/amount", "maximum": 100},
            "line": {"$ref": "#line"},
            "enum": {"$ref": "#/$defs/note"},  # a property named like a keyword
        },
        "$defs": {"line": {"$anchor": "line", "type": "string", "enum": ["a", "b"]},
                  "note": {"type": "string", "maxLength": 5}},
    },
    "Invoice/v1.json": {"type": "object", "properties": {"order": {"$ref": "../Order/v2.json"}}},
    "Order/evolution.yaml": "upcasters:\n  - {from: 1, steps: []}\n",
}

RICH_TOPOLOGY: dict[str, Any] = {
    "exchanges": [{"name": "events", "type": "topic"}, {"name": "everything", "type": "fanout"},
                  {"name": "by/headers", "type": "headers"}, {"name": "direct", "type": "direct"}],
    "queues": [{"name": "orders", "type": "quorum"}, {"name": "all", "type": "stream"},
               {"name": "matched", "type": "classic", "auto_delete": True},
               {"name": "lonely", "type": "quorum"}, {"name": "invoices", "type": "quorum"}],
    "bindings": [{"exchange": "events", "queue": "orders", "routing_key": "Order"},
                 {"exchange": "everything", "queue": "all"},
                 {"exchange": "by/headers", "queue": "matched",
                  "arguments": {"x-match": "all", "kind": "order"}},
                 {"exchange": "events", "queue": "lonely", "routing_key": "nothing.#"},
                 {"exchange": "direct", "queue": "invoices", "routing_key": "invoice"}],
    "routes": [
        {"name": "by-type", "message_type": "*", "to": [{"exchange": "events"}]},
        {"name": "copy-all", "message_type": "*", "to": [{"exchange": "everything"}]},
        {"name": "big", "message_type": "Order", "when": "message.total.amount > 100.0",
         "to": [{"exchange": "by/headers", "routing_key": ""},
                {"exchange": "direct", "routing_key": "big.order"}]},
        {"name": "invoices", "message_type": "Invoice",
         "to": [{"exchange": "direct", "routing_key": "invoice"}]},
        {"name": "orders-as-v2", "message_type": "Order", "version": 2,
         "to": [{"exchange": "direct", "routing_key": "v2"}]},
    ],
}


@functools.cache
def _spec_validator() -> jsonschema.Draft7Validator:
    spec = json.loads(SPEC.read_text())
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(spec, format_checker=checker)


def _spec_errors(document: dict[str, Any]) -> list[str]:
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in _spec_validator().iter_errors(document)]


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _validator_at(document: dict[str, Any], pointer: str) -> jsonschema.Draft202012Validator:
    """A 2020-12 validator for the schema at ``pointer``, with the document as its root."""
    root = {**document, "$ref": pointer}
    return jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture
def example() -> dict[str, Any]:
    return asyncapi_document(load_config(ROOT), amqp_url=URL)


@pytest.fixture
def rich_config(config: LoadConfig) -> Config:
    return config(topology=RICH_TOPOLOGY, schemas=RICH_SCHEMAS)


@pytest.fixture
def rich(rich_config: Config) -> dict[str, Any]:
    return asyncapi_document(rich_config, amqp_url="amqps://svc:pw@rabbit.example/prod",
                             title="Rich", version="2.3.4")


def test_the_example_configuration_is_a_valid_asyncapi_3_document(
        example: dict[str, Any]) -> None:
    """The repository root's document validates against the official 3.1.0 JSON Schema."""
    assert example["asyncapi"] == "3.1.0"
    assert _spec_errors(example) == []


def test_a_richer_configuration_is_a_valid_asyncapi_3_document(rich: dict[str, Any]) -> None:
    """Globs, fanout, headers and direct exchanges, anchors and shared files: still valid."""
    assert _spec_errors(rich) == []


def test_the_vendored_schema_catches_an_invalid_document(example: dict[str, Any]) -> None:
    """Validation is not vacuous: a channel binding naming both exchange and queue fails."""
    broken = copy.deepcopy(example)
    broken["channels"]["ingress"]["bindings"]["amqp"]["queue"] = {"name": "q"}

    assert _spec_errors(broken) != []


def test_info_and_server_come_from_the_flags_without_credentials(rich: dict[str, Any]) -> None:
    """Title, version and an amqps server with the vhost; no user or password anywhere."""
    assert rich["info"]["title"] == "Rich"
    assert rich["info"]["version"] == "2.3.4"
    assert rich["servers"]["rabbitmq"] == {
        "host": "rabbit.example:5671", "pathname": "/prod", "protocol": "amqps",
        "protocolVersion": "0.9.1", "title": "RabbitMQ",
        "description": "The broker, virtual host `prod`."}
    text = json.dumps(rich)
    assert "svc" not in text
    assert "pw@" not in text


def test_the_default_vhost_and_port(example: dict[str, Any]) -> None:
    """``amqp://host/`` is host:5672, vhost ``/``, and the title names the directory."""
    assert broker_server("amqp://rabbit/")["host"] == "rabbit:5672"
    assert broker_server("amqp://rabbit/%2F")["pathname"] == "/"
    assert example["info"]["title"] == f"{ROOT.name} message flows"
    assert "s3cret" not in json.dumps(example)


def test_one_channel_per_route_destination(example: dict[str, Any]) -> None:
    """Every (exchange, routing key) a route sends to is one channel with an AMQP binding."""
    topology = load_config(ROOT).topology
    wanted = {(d.exchange, d.routing_key or "{messageType}") for r in topology.routes
              for d in r.to}
    found = {(c["bindings"]["amqp"]["exchange"]["name"], c["address"])
             for c in example["channels"].values()
             if c["bindings"]["amqp"]["is"] == "routingKey"}

    assert found == wanted | {("mcp.ingress", "{messageType}"), ("mcp.dlx",
                                                                 "{reason}.{messageType}")}
    assert example["channels"]["shipping.ship"]["bindings"]["amqp"]["exchange"] == {
        "name": "shipping", "type": "direct", "durable": True, "autoDelete": False, "vhost": "/"}


def test_one_message_per_type_and_version(example: dict[str, Any]) -> None:
    """``components.messages`` holds ``<Type>.v<N>`` for every schema file, and DeadLetter."""
    registry = load_config(ROOT).registry
    wanted = {f"{t}.v{v.version}" for t, vs in registry.types.items() for v in vs}

    assert set(example["components"]["messages"]) == wanted | {"DeadLetter"}
    message = example["components"]["messages"]["OrderCreated.v2"]
    assert message["name"] == "OrderCreated"
    assert message["contentType"] == "application/json"
    assert message["payload"]["schemaFormat"] == SCHEMA_FORMAT
    assert message["bindings"]["amqp"]["messageType"] == "OrderCreated"


def test_every_ref_points_inside_the_document_and_resolves(
        example: dict[str, Any], rich: dict[str, Any]) -> None:
    """No ``$ref`` leaves the document; each one names something that exists."""
    for document in (example, rich):
        refs = _refs(document)
        assert refs
        outside = [ref for ref in refs if not ref.startswith("#/")]
        assert outside == []
        for ref in refs:
            _resolve(document, ref)  # raises KeyError when dangling


def test_shared_schema_files_become_components(example: dict[str, Any]) -> None:
    """``_common/money.json`` is ``components.schemas._common.money``, referenced by pointer."""
    shared = example["components"]["schemas"]["_common.money"]
    payload = example["components"]["messages"]["OrderCreated.v2"]["payload"]["schema"]

    assert shared["schemaFormat"] == SCHEMA_FORMAT
    assert "amount" in shared["schema"]["$defs"]
    assert payload["properties"]["currency"] == {
        "$ref": "#/components/schemas/_common.money/schema/$defs/currency"}


def test_payloads_validate_what_the_registry_validates(rich: dict[str, Any]) -> None:
    """Rewritten references keep their meaning: valid bodies pass, invalid ones fail."""
    order = _validator_at(rich, "#/components/messages/Order.v2/payload/schema")
    invoice = _validator_at(rich, "#/components/messages/Invoice.v1/payload/schema")
    good = {"id": "1", "total": {"amount": 5, "currency": "EUR"}, "tax": 7, "line": "a",
            "enum": "note"}

    order.validate(good)
    invoice.validate({"order": good})
    for bad in ({"currency": "euro"}, {"amount": -1}):
        with pytest.raises(ValidationError):
            order.validate({**good, "total": {**good["total"], **bad}})
    for field, value in (("tax", 101), ("line", "c"), ("enum", "too long")):
        with pytest.raises(ValidationError):
            order.validate({**good, field: value})
    with pytest.raises(ValidationError):
        invoice.validate({"order": {"id": "1"}})


def test_payloads_declare_json_schema_2020_12(rich: dict[str, Any]) -> None:
    """A 2020-12 file is ``application/schema+json;version=2020-12``, without $schema or $id."""
    payload = rich["components"]["messages"]["Order.v2"]["payload"]
    schema = payload["schema"]

    assert payload["schemaFormat"] == "application/schema+json;version=2020-12"
    assert "$schema" not in schema
    assert "$id" not in schema
    assert schema["properties"]["tax"] == {
        "$ref": "#/components/schemas/_shared.defs/schema/$defs/amount", "maximum": 100}
    assert schema["properties"]["line"] == {
        "$ref": "#/components/messages/Order.v2/payload/schema/$defs/line"}


def test_a_draft_07_file_is_labelled_draft_07(config: LoadConfig) -> None:
    """A draft-07 file says so; a ``$ref`` with siblings in it is wrapped in allOf."""
    schemas = {"T/v1.json": {"$schema": "http://json-schema.org/draft-07/schema#",
                             "definitions": {"n": {"type": "integer"}},
                             "properties": {"n": {"$ref": "#/definitions/n", "minimum": 1}}}}

    document = asyncapi_document(config(topology=BASE_TOPOLOGY, schemas=schemas), amqp_url=URL)

    payload = document["components"]["messages"]["T.v1"]["payload"]
    assert payload["schemaFormat"] == "application/schema+json;version=draft-07"
    assert payload["schema"]["properties"]["n"] == {
        "allOf": [{"$ref": "#/components/messages/T.v1/payload/schema/definitions/n"}],
        "minimum": 1}
    draft7 = jsonschema.Draft7Validator({**document, "$ref": "#/components/messages/T.v1/"
                                                             "payload/schema"})
    with pytest.raises(ValidationError):
        draft7.validate({"n": 0})


def test_references_by_id_become_pointers(config: LoadConfig) -> None:
    """Embedded ``$id`` (URL, urn:uuid) and another file's ``$id`` resolve to pointers."""
    schemas = {
        "_vendor/money.json": {"$id": "https://schemas.example.com/money", "minimum": 0},
        "T/v1.json": {
            "$defs": {"code": {"$id": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed",
                               "$defs": {"c": {"$anchor": "c", "maxLength": 3}}},
                      "tree": {"$id": "https://example.com/tree/",
                               "properties": {"n": {"$ref": "node"}},
                               "$defs": {"node": {"$id": "node", "type": "integer"}}}},
            "properties": {
                "m": {"$ref": "https://schemas.example.com/money"},
                "c": {"$ref": "urn:uuid:deadbeef-1234-ffff-ffff-4321feebdaed#c"},
                "t": {"$ref": "https://example.com/tree/"},
                "s": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
            }},
    }

    document = asyncapi_document(config(topology=BASE_TOPOLOGY, schemas=schemas), amqp_url=URL)

    home = "#/components/messages/T.v1/payload/schema"
    schema = document["components"]["messages"]["T.v1"]["payload"]["schema"]
    assert schema["properties"] == {
        "m": {"$ref": "#/components/schemas/_vendor.money/schema"},
        "c": {"$ref": f"{home}/$defs/code/$defs/c"},
        "t": {"$ref": f"{home}/$defs/tree"},
        "s": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
    }
    assert schema["$defs"]["tree"]["properties"]["n"] == {
        "$ref": f"{home}/$defs/tree/$defs/node"}
    assert _spec_errors(document) == []


def test_older_versions_must_name_their_version_in_a_header(rich: dict[str, Any]) -> None:
    """Without ``x-schema-version`` the newest applies, so only older versions require it."""
    messages = rich["components"]["messages"]

    assert messages["Order.v1"]["headers"]["required"] == ["x-schema-version"]
    assert "required" not in messages["Order.v2"]["headers"]
    assert messages["Order.v2"]["headers"]["properties"]["x-schema-version"] == {"const": 2}
    headers = rich["components"]["schemas"]["MessageHeaders"]["properties"]
    assert {"x-schema-version", "traceparent", "tracestate"} <= set(headers)


def test_glob_routes_without_a_key_route_by_type(rich: dict[str, Any]) -> None:
    """A route for ``*`` with no routing key is one channel keyed by the message type."""
    channel = rich["channels"]["events.messageType"]

    assert channel["address"] == "{messageType}"
    assert channel["parameters"]["messageType"]["enum"] == ["Invoice", "Order"]
    assert set(channel["messages"]) == {"Invoice.v1", "Order.v1", "Order.v2"}


def test_a_route_asking_for_a_version_carries_only_that_version(
        rich: dict[str, Any], example: dict[str, Any]) -> None:
    """Copies of a route with ``version: N`` are v N (older ones upcast), so the channel says so."""
    assert set(rich["channels"]["direct.v2"]["messages"]) == {"Order.v2"}
    assert set(example["channels"]["orders.order.created"]["messages"]) == {"OrderCreated.v2"}
    assert set(example["channels"]["orders.order.review"]["messages"]) == {
        "OrderCreated.v1", "OrderCreated.v2"}


def test_queue_channels_carry_what_their_bindings_let_through(rich: dict[str, Any]) -> None:
    """Topic, fanout, headers and direct bindings decide each queue's messages."""
    channels = rich["channels"]

    def messages(queue: str) -> set[str]:
        return set(channels[f"queue.{queue}"]["messages"])

    assert messages("orders") == {"Order.v1", "Order.v2"}
    assert messages("all") == {"Invoice.v1", "Order.v1", "Order.v2"}
    assert messages("matched") == {"Order.v1", "Order.v2"}  # headers: cannot be told apart
    assert messages("invoices") == {"Invoice.v1"}
    assert messages("lonely") == set()
    assert messages("mcp.dead-letters") == {"DeadLetter"}
    assert channels["queue.matched"]["bindings"]["amqp"]["queue"] == {
        "name": "matched", "durable": True, "exclusive": False, "autoDelete": True,
        "vhost": "prod"}
    assert "queue.mcp.router.ingress" not in channels  # the router's own


def test_operations_send_per_type_and_receive_per_destination(rich: dict[str, Any]) -> None:
    """``send.<Type>`` to the ingress; a receive per destination and per queue."""
    operations = rich["operations"]

    assert operations["send.Order"]["action"] == "send"
    assert operations["send.Order"]["channel"] == {"$ref": "#/channels/ingress"}
    assert operations["send.Order"]["messages"] == [
        {"$ref": "#/channels/ingress/messages/Order.v1"},
        {"$ref": "#/channels/ingress/messages/Order.v2"}]
    assert operations["receive.by/headers.empty"]["channel"] == {
        "$ref": "#/channels/by~1headers.empty"}
    assert operations["consume.invoices"]["action"] == "receive"
    assert {k for k in operations if k.startswith("receive.")} == {
        f"receive.{c}" for c, v in rich["channels"].items()
        if "x-mcp-routes" in v}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", "asyncapi", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_the_command_prints_yaml_for_the_example() -> None:
    """``mcp-router asyncapi --config .`` prints the YAML document on stdout, exit 0."""
    result = _cli("--config", ".", "--amqp-url", URL)

    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == asyncapi_document(load_config(ROOT), amqp_url=URL)


def test_the_command_writes_json_to_a_file(tmp_path: Path) -> None:
    """``--format json --output FILE`` writes the document and says what it holds."""
    out = tmp_path / "asyncapi.json"

    result = _cli("--config", ".", "--format", "json", "--output", str(out), "--title", "Shop")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(out.read_text())["info"]["title"] == "Shop"
    assert result.stderr.startswith(f"wrote {out}: ")


def test_the_command_reports_a_bad_configuration_like_check(tmp_path: Path) -> None:
    """A configuration that does not check: ``FILE:LINE: message`` lines, exit 1."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "topology.yaml").write_text("routes:\n  - name: r\n    message_type: T\n"
                                            "    to: [{exchange: missing}]\n")

    result = _cli("--config", str(tmp_path))

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{tmp_path}/topology.yaml:4: route 'r' sends to undeclared exchange 'missing'" \
        in result.stderr
    assert "Traceback" not in result.stderr


def test_alternatives_and_shadows_show_on_their_channels_with_their_shares(
        config: LoadConfig) -> None:
    """Each branch's channel names the route, its role, strategy and share; the document
    stays valid, and a canary's channel carries only its version."""
    loaded = config(topology={
        "exchanges": [{"name": "orders", "type": "topic"}],
        "routes": [{"name": "billing", "message_type": "Order", "strategy": "weighted",
                    "key": "message.id",
                    "alternatives": [{"exchange": "orders", "routing_key": "v1", "share": 90},
                                     {"exchange": "orders", "routing_key": "v2", "share": 10,
                                      "version": 2, "name": "canary"}],
                    "shadow": [{"exchange": "orders", "routing_key": "next", "share": 5}]}]},
        schemas=RICH_SCHEMAS)

    document = asyncapi_document(loaded, amqp_url=URL)

    assert _spec_errors(document) == []
    canary = document["channels"]["orders.v2"]
    assert canary["x-mcp-branches"] == [{"route": "billing", "branch": "canary",
                                         "role": "alternative", "strategy": "weighted",
                                         "share": 10.0, "key": "message.id"}]
    assert "Alternative `canary` of `billing` (weighted by `message.id`, 10 % share)." in \
        canary["description"]
    assert list(canary["messages"]) == ["Order.v2"]
    shadow = document["channels"]["orders.next"]
    assert shadow["x-mcp-branches"][0]["role"] == "shadow"
    assert shadow["x-mcp-branches"][0]["share"] == 5.0
