"""Stage 2: check a decoded message against its schema in the registry.

An unknown type is ``unknown_type``; a missing version or a body that fails
the schema is ``schema_invalid`` with every error as ``/json/pointer:
keyword: message``.
"""

from __future__ import annotations

from router.outcome import DeadLetter, Decoded, Reason
from router.schemas import SchemaRegistry

__all__ = ["MAX_ERRORS", "validate"]

MAX_ERRORS = 10  # listed in x-mcp-error; more are counted, not listed


def _pointer(path: list[str | int]) -> str:
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "/" + "/".join(escaped)


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
    errors = []
    for count, error in enumerate(validator.iter_errors(message.body)):
        if count == MAX_ERRORS:
            errors.append("...")
            break
        keyword = next((p for p in reversed(error.schema_path) if isinstance(p, str)), "schema")
        errors.append(f"{_pointer(error.instance_path)}: {keyword}: {error.message}")
    detail = "; ".join(errors)
    return DeadLetter(Reason.SCHEMA_INVALID,
                      f"{message.message_type} v{schema.version}: {detail}",
                      message.message_type)
