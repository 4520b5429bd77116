"""Sensitive fields: every walk over a body that touches them.

Where schemas mark them (``Marks``: paths of property names, ``EACH`` and
``Rest`` steps) is found at load by ``router.config.sensitive_marks``.  Over a
body, the marks give one walk with three uses: ``seal`` (encrypt every
plain sensitive value, leaving sealed ones alone), ``unseal`` (decrypt) and
``mask`` (replace each value with ``MASK``, for logs, spans, journals and
pages).  ``redacted`` is the one call that turns any body into something safe
to show.  Pure; nonces are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from router.config.keyring import Keyring
from router.config.sensitive_marks import EACH, Marks, Rest, Step
from router.core.decode import encode_body, parse_body
from router.core.fieldcrypt import (
    EVERY_PURPOSE,
    DecryptError,
    Nonces,
    Purpose,
    is_sealed,
    open_value,
    seal_value,
    shape_error,
)

__all__ = [
    "MASK",
    "mask",
    "redacted",
    "reopen",
    "seal",
    "sealed_at",
    "unseal",
    "withheld",
]

MASK = "***"


# --- walking a body ----------------------------------------------------------------------

def _children(value: Any, step: Step) -> Iterator[tuple[Any, Any]]:
    """(container, key) pairs that ``step`` reaches inside ``value``."""
    if isinstance(step, str):
        if isinstance(value, dict) and step in value:
            yield value, step
    elif isinstance(step, Rest):
        if isinstance(value, dict):
            yield from ((value, k) for k in value if k not in step.declared)
    elif isinstance(value, list):
        yield from ((value, i) for i in range(len(value)))


def _keys(value: Any, step: Step) -> list[Any]:
    """The keys (or indexes) of ``value`` that ``step`` reaches."""
    if isinstance(step, str):
        return [step] if isinstance(value, dict) and step in value else []
    if isinstance(step, Rest):
        return [k for k in value if k not in step.declared] if isinstance(value, dict) else []
    return list(range(len(value))) if isinstance(value, list) else []


def _changed(value: Any, path: tuple[Step, ...], change: Callable[[Any], Any]) -> Any:
    """``value`` with ``change`` applied at ``path``: containers on the way are copied
    (shallow), everything else is shared, the input is never modified."""
    keys = _keys(value, path[0])
    if not keys:
        return value
    out = dict(value) if isinstance(value, dict) else list(value)
    for key in keys:
        out[key] = _changed(out[key], path[1:], change) if len(path) > 1 else change(out[key])
    return out


def _rewrite(body: Any, marks: Marks, change: Callable[[Any], Any]) -> Any:
    """A copy of ``body`` with ``change`` applied to each marked value (the input untouched)."""
    for path in marks:
        body = _changed(body, path, change)
    return body


def seal(body: Any, marks: Marks, keyring: Keyring, nonces: Nonces,
         purpose: Purpose = Purpose.COPY) -> Any:
    """``body`` with each plain sensitive value sealed for ``purpose`` (sealed ones are kept
    as they are).  Nothing to seal: ``body`` itself comes back."""
    return _rewrite(body, marks,
                    lambda v: v if is_sealed(v) else seal_value(v, keyring, nonces, purpose))


def unseal(body: Any, marks: Marks, keyring: Keyring) -> Any:
    """``body`` with each sealed sensitive value opened; ``DecryptError`` if one cannot be."""
    return _rewrite(body, marks,
                    lambda v: open_value(v, keyring, EVERY_PURPOSE) if is_sealed(v) else v)


def reopen(body: Any, marks: Marks, keyring: Keyring, purpose: Purpose) -> Any:
    """``body`` with each value sealed for ``purpose`` opened; every other value (plain,
    sealed for another purpose, under a key this keyring lacks) kept as it is.
    Nothing opened: ``body`` itself comes back."""
    def opened(value: Any) -> Any:
        if not is_sealed(value):
            return value
        try:
            return open_value(value, keyring, (purpose,))
        except DecryptError:
            return value
    return _rewrite(body, marks, opened)


def mask(body: Any, marks: Marks) -> Any:
    """``body`` with each sensitive value, plain or sealed, replaced by ``MASK``."""
    return _rewrite(body, marks, lambda _v: MASK)


def sealed_at(body: Any, marks: Marks) -> list[tuple[tuple[str | int, ...], str | None]]:
    """Every sensitive value that is sealed (or looks like an attempt), with its shape error."""
    found: list[tuple[tuple[str | int, ...], str | None]] = []

    def visit(value: Any, path: tuple[Step, ...], where: tuple[str | int, ...]) -> None:
        for container, key in _children(value, path[0]):
            here = (*where, key)
            if len(path) > 1:
                visit(container[key], path[1:], here)
            elif isinstance(container[key], dict) and "$enc" in container[key]:
                found.append((here, shape_error(container[key])))

    for path in marks:
        visit(body, path, ())
    return found


def redacted(body: bytes, marks: Marks) -> bytes:
    """A body safe to log, journal or show: every sensitive value masked.

    A body that is not JSON cannot be searched for its fields; when its type
    has marks at all, it is withheld whole.
    """
    if not marks:
        return body
    try:
        return encode_body(mask(parse_body(body), marks))
    except ValueError:
        return f"<{len(body)} bytes withheld: not JSON, and the type has sensitive " \
               "fields>".encode()


# Keywords whose messages name properties, never values.
_NAMES_ONLY = frozenset({"required", "additionalProperties", "unevaluatedProperties",
                         "propertyNames", "dependentRequired", "minProperties",
                         "maxProperties"})


def _reaches(path: tuple[str | int, ...], mark: tuple[Step, ...]) -> bool:
    """Whether the instance location ``path`` is on the way to (or inside) ``mark``."""
    for here, step in zip(path, mark, strict=False):
        if isinstance(step, str) and here != step:
            return False
        if step is EACH and not isinstance(here, int):
            return False
        if isinstance(step, Rest) and (not isinstance(here, str) or here in step.declared):
            return False
    return True


def withheld(path: tuple[str | int, ...], keyword: str, marks: Marks) -> str | None:
    """The text to show instead of a validation message that could quote a sensitive value."""
    for mark in marks:
        if _reaches(path, mark) and (len(path) >= len(mark) or keyword not in _NAMES_ONLY):
            return "(the value is sensitive and not shown)"
    return None
