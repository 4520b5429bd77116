"""The shape of the code (issue 13): small modules and functions, distinct names, reasons.

Walks ``router/**.py`` and holds every module to:

* at most ``MAX_MODULE_LINES`` lines, and every function (``def`` line to its
  last line, decorators not counted) at most ``MAX_FUNCTION_LINES``;
* every ``# noqa`` naming its codes and saying why after a dash:
  ``# noqa: S603 - a fixed command`` (``--`` works too);
* every ``# type: ignore[code]`` naming its codes and followed by the reason
  in a comment of its own: ``# type: ignore[arg-type]  # aio-pika's types are
  invariant``; when that comment is a ``noqa`` with a reason, the one reason
  serves both;
* no two module names anywhere under ``router/`` one edit apart
  (``consume``/``consumer``): a reader should never wonder which is meant.

``KNOWN_DEBTS`` lists what does not comply yet, each with the area that owns
it; an entry that no longer applies fails ``test_known_debts_are_still_owed``,
so the list only shrinks.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "router"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50

# (kind, where) -> the area that owns the fix.  Kinds: "module" (path: too long),
# "function" (path:qualified name: too long), "comment" (path:line: an ignore
# without a reason), "names" (stem/stem: one edit apart).
KNOWN_DEBTS: dict[tuple[str, str], str] = {
}

_NOQA = re.compile(r"#\s*noqa\b(?P<codes>:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?"
                   r"(?P<rest>.*)", re.IGNORECASE)
_REASON = re.compile(r"\s+--?\s+\S")  # " - why" or " -- why"
_TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]+\])?(?P<rest>.*)")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _comment_problem(comment: str) -> str | None:
    """Why a comment's ``noqa`` or ``type: ignore`` breaks the convention, or None."""
    ignore = _TYPE_IGNORE.search(comment)
    if ignore is not None:
        if ignore["codes"] is None:
            return "a type: ignore without [codes]"
        rest = ignore["rest"].strip()
        noqa = _NOQA.fullmatch(rest)
        if not rest.startswith("#") or len(rest.lstrip("# ")) == 0 or (
                noqa is not None and _comment_problem(rest) is not None):
            return "a type: ignore[...] without '  # why' after it"
        return None
    noqa = _NOQA.search(comment)
    if noqa is None:
        return None
    if noqa["codes"] is None:
        return "a bare noqa (name the codes)"
    if not _REASON.match(noqa["rest"]):
        return "a noqa without ' - why' after its codes"
    return None


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """Every function and method, by qualified name, with its length in lines."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            found.append((prefix + node.name, node.end_lineno - node.lineno + 1))
            found += _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, f"{prefix}{node.name}.")
        else:
            found += _functions(node, prefix)
    return found


def _distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _debts() -> dict[tuple[str, str], str]:
    """Every breach of the shape rules in ``router/`` now, with what is wrong."""
    found: dict[tuple[str, str], str] = {}
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found["module", _name(path)] = f"{lines} lines"
        for name, length in _functions(ast.parse(text)):
            if length > MAX_FUNCTION_LINES:
                found["function", f"{_name(path)}:{name}"] = f"{length} lines"
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT and (why := _comment_problem(token.string)):
                found["comment", f"{_name(path)}:{token.start[0]}"] = why
    stems = sorted({p.stem for p in _modules()} - {"__init__", "__main__"})
    for a, b in itertools.combinations(stems, 2):
        if _distance(a, b) == 1:
            found["names", f"{a}/{b}"] = "module names one edit apart"
    return found


def test_router_has_the_shape_issue_13_asks_for() -> None:
    """No module, function, lint ignore or module name breaks the rules, but the known debts."""
    new = {k: why for k, why in _debts().items() if k not in KNOWN_DEBTS}
    assert new == {}


def test_known_debts_are_still_owed() -> None:
    """Every known debt still applies: a paid one is struck from ``KNOWN_DEBTS``."""
    paid = sorted(set(KNOWN_DEBTS) - set(_debts()))
    assert paid == []


def test_comment_convention_accepts_reasons_and_refuses_bare_ignores() -> None:
    """The parser of the convention: codes and a reason, for noqa and type: ignore alike."""
    assert _comment_problem("# noqa: S603 - a fixed command") is None
    assert _comment_problem("# noqa: BLE001, S110 -- whatever a handler raises") is None
    assert _comment_problem("# type: ignore[arg-type]  # aio-pika's types are invariant") is None
    assert _comment_problem("# type: ignore[override]  # noqa: PLR0917 - the API's") is None
    assert _comment_problem("# a comment that says noqa in passing") is None
    assert _comment_problem("# noqa") is not None
    assert _comment_problem("# noqa: S603") is not None
    assert _comment_problem("# noqa: S603 because") is not None
    assert _comment_problem("# type: ignore") is not None
    assert _comment_problem("# type: ignore[arg-type]") is not None
    assert _comment_problem("# type: ignore[override]  # noqa: PLR0917") is not None


def test_edit_distance_counts_one_letter_as_one() -> None:
    """``consume``/``consumer`` are one edit apart; ``letters``/``lettertext`` are not."""
    assert _distance("consume", "consumer") == 1
    assert _distance("source", "sources") == 1
    assert _distance("letters", "lettertext") > 1
