"""Every message type's lineage, loaded and checked against its compatibility mode.

``load_evolution`` reads ``schemas/evolution.yaml`` and each type's
``evolution.yaml`` (``router.config.lineage``), then proves each version
readable as its mode requires with the check-time comparer
(``router.evolution.compat``); every break is a ``Problem`` at the newer
version's file and line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from router.config.lineage import EVOLUTION_FILE, Lineage, default_mode, parse_lineage
from router.config.source import Document, load_yaml
from router.errors import Problem
from router.evolution.compat import Versions, breaks
from router.evolution.inlined import Inlined, inline

__all__ = ["load_evolution"]


def _check(lineage: Lineage, inlined: Mapping[int, Inlined]) -> list[Problem]:
    """Every break of the lineage's compatibility mode, at the newer version's lines."""
    mode = lineage.compatibility
    found: list[Problem] = []
    for i, new in enumerate(lineage.versions[1:], start=1):
        olds = lineage.versions[:i] if mode.endswith("_transitive") else lineage.versions[i - 1:i]
        for old in olds:
            label = f"v{old}"
            if lineage.backward:
                chain = lineage.chain(old, new)
                if not any(u.trusted for u in chain):
                    writer = inlined[old].schema
                    for upcaster in chain:
                        writer = upcaster.widen(writer)
                    found += [Problem(inlined[new].file, f"not backward compatible with "
                                                         f"{label}: {b.why}", b.line)
                              for b in breaks(writer, inlined[new].schema, Versions(
                                  label, f"v{new}", inlined[new].lines, new_is_reader=True))]
            if mode.startswith(("forward", "full")):
                found += [Problem(inlined[new].file, f"not forward compatible with {label}: "
                                                     f"{b.why}", b.line)
                          for b in breaks(inlined[new].schema, inlined[old].schema, Versions(
                              f"v{new}", label, inlined[new].lines, new_is_reader=False))]
    return found


def load_evolution(schemas_dir: Path, display: str, docs: Mapping[str, Document],
                   versions: Mapping[str, tuple[int, ...]]
                   ) -> tuple[dict[str, Lineage], list[Problem]]:
    """Every type's lineage, and every problem: bad files, unknown functions, breaks.

    ``docs`` are the loaded schema files by path below ``schemas/``;
    ``versions`` the compiled versions of each type, ascending.
    """
    problems: list[Problem] = []
    default = default_mode(schemas_dir, display, problems)
    lineages: dict[str, Lineage] = {}
    for message_type, known in versions.items():
        file = schemas_dir / message_type / EVOLUTION_FILE
        lineage = Lineage(message_type, known, default)
        if file.is_file():
            doc = load_yaml(file, f"{display}/{message_type}/{EVOLUTION_FILE}")
            if isinstance(doc, Problem):
                problems.append(doc)
            else:
                lineage = parse_lineage(doc, message_type, known, default, problems)
        lineages[message_type] = lineage
        if lineage.compatibility != "none" and len(known) > 1:
            inlined = {v: inline(f"{message_type}/v{v}.json", docs) for v in known}
            problems += _check(lineage, inlined)
    for file in sorted(schemas_dir.glob(f"*/{EVOLUTION_FILE}")):
        if file.parent.name not in versions:
            problems.append(Problem(f"{display}/{file.parent.name}/{EVOLUTION_FILE}",
                                    f"no schema versions for message type "
                                    f"{file.parent.name!r} next to this file"))
    return lineages, problems
