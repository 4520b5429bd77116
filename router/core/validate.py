"""Stage 2: check a decoded message against its schema in the registry.

An unknown type is ``unknown_type``; a missing version or a body that fails
the schema is ``schema_invalid`` with every error as ``/json/pointer:
keyword: message``.

A schema's sensitive fields (``router.core.sensitive``) may arrive sealed (a
publisher encrypted them): a sealed value must have the shape of one, and the
errors it causes at its own place are not errors.  An error at or around a
sensitive field never quotes its value.
"""

from __future__ import annotations

from typing import Any

from router.config.schemas import SchemaRegistry
from router.config.sensitive_marks import Marks
from router.core.outcome import DeadLetter, Decoded, Reason
from router.core.sensitive import sealed_at, withheld

__all__ = ["MAX_ERRORS", "validate"]

MAX_ERRORS = 10  # listed in x-mcp-error; more are counted, not listed


def _pointer(path: list[str | int]) -> str:
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "/" + "/".join(escaped)


def _errors(validator: Any, body: Any, marks: Marks) -> list[str]:
    """Every error as ``/pointer: keyword: message``, none at a well-formed sealed value."""
    sealed: list[tuple[str | int, ...]] = []
    errors = []
    for where, problem in sealed_at(body, marks) if marks else ():
        if problem is None:
            sealed.append(where)
        else:
            errors.append(f"{_pointer(list(where))}: sealed value: {problem}")
    for error in validator.iter_errors(body):
        path = tuple(error.instance_path)
        if any(path[:len(s)] == s for s in sealed):
            continue
        if len(errors) == MAX_ERRORS:
            errors.append("...")
            break
        keyword = next((p for p in reversed(error.schema_path) if isinstance(p, str)), "schema")
        text = withheld(path, keyword, marks) or error.message
        errors.append(f"{_pointer(list(path))}: {keyword}: {text}")
    return errors


def validate(message: Decoded, registry: SchemaRegistry) -> Decoded | DeadLetter:
    """The message unchanged if valid, else a dead letter saying exactly what failed."""
    schema = registry.lookup(message.message_type, message.version)
    if isinstance(schema, str):
        known = message.message_type in registry
        reason = Reason.SCHEMA_INVALID if known else Reason.UNKNOWN_TYPE
        return DeadLetter(reason, schema, message.message_type)
    validator = schema.validator
    if validator.is_valid(message.body):
        return message
    errors = _errors(validator, message.body, schema.marks)
    if not errors:
        return message  # only sealed sensitive values differed from their plain schema
    detail = "; ".join(errors)
    return DeadLetter(Reason.SCHEMA_INVALID,
                      f"{message.message_type} v{schema.version}: {detail}",
                      message.message_type)
