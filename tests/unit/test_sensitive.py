"""Sensitive fields: found at any depth, sealed, masked, validated sealed, never quoted."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from router.config.keyring import Keyring
from router.config.sensitive_marks import EACH
from router.core.fieldcrypt import is_sealed
from router.core.outcome import DeadLetter, Decoded
from router.core.sensitive import MASK, mask, redacted, seal, unseal
from router.core.validate import validate
from tests.unit.conftest import Check, LoadRegistry

CARD = {"type": "object", "properties": {
    "number": {"type": "string", "pattern": "^[0-9]{16}$", "x-mcp-sensitive": True},
    "brand": {"type": "string"}}}
ORDER: dict[str, Any] = {
    "type": "object", "required": ["order_id", "customer"],
    "properties": {
        "order_id": {"type": "string"},
        "customer": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email", "x-mcp-sensitive": True},
            "name": {"type": "string"}}},
        "cards": {"type": "array", "items": {"$ref": "../_common/card.json"}},
        "total": {"type": "number"},
    },
}
SCHEMAS = {"Paid/v1.json": ORDER, "_common/card.json": CARD}
BODY = {"order_id": "o-1", "customer": {"email": "ada@example.com", "name": "Ada"},
        "cards": [{"number": "4111111111111111", "brand": "visa"}], "total": 10}
KEYS = Keyring({"pii.v1": b"\x07" * 32}, "pii.v1")


def nonces() -> Any:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def test_marks_are_found_at_any_depth_and_through_refs(registry: LoadRegistry) -> None:
    """A nested property and an array item's property from a $ref'd file are both marked."""
    found, problems = registry(SCHEMAS)
    assert problems == []
    assert found.marks("Paid", 1) == (("customer", "email"), ("cards", EACH, "number"))


def test_unsupported_marks_are_problems(registry: LoadRegistry) -> None:
    """A mark that is not a boolean, on the whole message, or under patternProperties."""
    _, problems = registry({"Bad/v1.json": {
        "type": "object", "x-mcp-sensitive": True,
        "properties": {"a": {"x-mcp-sensitive": "yes"}},
        "patternProperties": {"^x": {"x-mcp-sensitive": True}}}})
    assert any("on the whole message" in p for p in problems)
    assert any("must be true or false" in p for p in problems)


def test_seal_replaces_only_the_sensitive_values() -> None:
    """Sealing touches the marked values; everything else, and the input, stay as they were."""
    marks = (("customer", "email"), ("cards", EACH, "number"))
    sealed = seal(BODY, marks, KEYS, nonces())
    assert is_sealed(sealed["customer"]["email"])
    assert is_sealed(sealed["cards"][0]["number"])
    assert sealed["customer"]["name"] == "Ada"
    assert sealed["total"] == 10
    assert BODY == {**BODY, "customer": {"email": "ada@example.com", "name": "Ada"}}
    assert b"ada@example.com" not in orjson.dumps(sealed)
    assert unseal(sealed, marks, KEYS) == BODY
    assert seal(sealed, marks, KEYS, nonces()) == sealed  # sealed values are left alone


def test_mask_and_redacted_hide_plain_and_sealed_values() -> None:
    """The one masking call for logs and journals hides the values, keeps the rest."""
    marks = (("customer", "email"),)
    assert mask(BODY, marks)["customer"] == {"email": MASK, "name": "Ada"}
    assert orjson.loads(redacted(orjson.dumps(BODY), marks))["customer"]["email"] == MASK
    assert b"withheld" in redacted(b"not json ada@example.com", marks)
    assert redacted(b"anything", ()) == b"anything"


def test_a_sealed_message_validates_by_its_shape(registry: LoadRegistry) -> None:
    """Client-side sealed values pass where the plain schema would refuse an object."""
    found, _ = registry(SCHEMAS)
    sealed = seal(BODY, found.marks("Paid", 1), KEYS, nonces())
    assert validate(Decoded("Paid", 1, sealed), found) == Decoded("Paid", 1, sealed)


def test_a_broken_seal_is_schema_invalid(registry: LoadRegistry) -> None:
    """A value that tries to be sealed but is not well formed is refused, by pointer."""
    found, _ = registry(SCHEMAS)
    body = {**BODY, "customer": {"email": {"$enc": "AES-256-GCM", "kid": "x", "ct": "y"}}}
    result = validate(Decoded("Paid", 1, body), found)
    assert isinstance(result, DeadLetter)
    assert "/customer/email: sealed value: kid must be" in result.error


def test_errors_never_quote_a_sensitive_value(registry: LoadRegistry) -> None:
    """An invalid e-mail is reported by pointer and keyword, without its value."""
    found, _ = registry(SCHEMAS)
    body = {**BODY, "customer": {"email": "not-an-email-ada"}, "total": "x"}
    result = validate(Decoded("Paid", 1, body), found)
    assert isinstance(result, DeadLetter)
    assert "/customer/email: format: (the value is sensitive and not shown)" in result.error
    assert "not-an-email-ada" not in result.error
    assert "/total: type:" in result.error
    assert '"x"' in result.error


def test_check_refuses_routing_on_a_sensitive_field(check: Check) -> None:
    """A when that reads a sensitive field (or inside one) is refused at its line."""
    topology = {"exchanges": [{"name": "orders"}], "routes": [
        {"name": "ok", "message_type": "Paid", "when": "message.customer.name == 'x'",
         "to": [{"exchange": "orders"}]},
        {"name": "leaky", "message_type": "Paid*",
         "when": "message.cards[0].number.startsWith('4')", "to": [{"exchange": "orders"}]}]}
    problems = check(topology=topology, schemas=SCHEMAS,
                     policies={"enc.yaml": {"encryption": {"key": "pii"}}})
    assert "topology.yaml:11: route 'leaky': 'when' reads message.cards.*.number, sensitive " \
           "in Paid (/cards/*/number): routing on it would see only ciphertext" in problems
    assert not any("'ok'" in p for p in problems)


def test_check_wants_a_key_file_for_the_policy_key(check: Check) -> None:
    """No policy key for sensitive schemas, or a key id no file provides, is a problem."""
    assert check(schemas=SCHEMAS) == [
        "policies: schemas mark sensitive fields (x-mcp-sensitive) but no policy names an "
        "encryption key: add 'encryption: {key: NAME}' and create it with 'mcp-router keys "
        "rotate NAME'"]
    assert check(schemas=SCHEMAS, policies={"enc.yaml": "encryption:\n  key: pii.v3\n"}) == [
        "policies/enc.yaml:2: encryption key id 'pii.v3': no key file provides it "
        "(keys/pii/v3.json)"]
