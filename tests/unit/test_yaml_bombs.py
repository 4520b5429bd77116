"""No configuration file can exhaust the machine: alias bombs are refused before any walk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router.config.configuration import load_config
from router.config.reload import prepare_reload
from router.config.source import MAX_FILE_BYTES, load_yaml
from tests.unit.conftest import BASE_TOPOLOGY, Check, WriteConfig

ROOT = Path(__file__).resolve().parents[2]


def laughs(levels: int = 9, key: str = "lol") -> str:
    """The "billion laughs": each level lists the one before ten times."""
    lines = [f'{key}0: &{key}0 "lol"']
    for n in range(1, levels + 1):
        refs = ", ".join([f"*{key}{n - 1}"] * 10)
        lines.append(f"{key}{n}: &{key}{n} [{refs}]")
    return "\n".join(lines) + "\n"


BOMB_TOPOLOGY = "exchanges: []\nqueues: []\nbindings: []\nroutes: []\nx-bomb:\n" + \
    textwrap.indent(laughs(), "  ")


def test_an_alias_bomb_is_refused_at_its_line(tmp_path: Path) -> None:
    """The problem names the file and the line where the expansion passes the limit."""
    path = tmp_path / "t.yaml"
    path.write_text(laughs())

    problem = load_yaml(path, "t.yaml")

    assert not hasattr(problem, "data")
    assert str(problem).startswith("t.yaml:6: YAML aliases expand this document by ")
    assert "alias bomb" in str(problem)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    """Data that contains itself would send every walk round for ever."""
    path = tmp_path / "t.yaml"
    path.write_text("a: &a\n  b: [*a]\n")

    assert "refers to a node that contains it" in str(load_yaml(path, "t.yaml"))


def test_merge_keys_that_double_at_every_level_are_refused(tmp_path: Path) -> None:
    """A bomb built of ``<<`` merges is sized before PyYAML flattens the merges."""
    lines = ["m0: &m0 {a: 1, b: 2}"]
    lines += [f"m{n}: &m{n} {{<<: [*m{n - 1}, *m{n - 1}, *m{n - 1}, *m{n - 1}]}}"
              for n in range(1, 40)]
    path = tmp_path / "t.yaml"
    path.write_text("\n".join(lines) + "\n")

    assert "alias bomb" in str(load_yaml(path, "t.yaml"))


def test_ordinary_anchors_still_load(tmp_path: Path) -> None:
    """Sharing a rule or two with anchors is fine: only a large expansion is refused."""
    path = tmp_path / "t.yaml"
    path.write_text("base: &b {attempts: 3, delays: [1s, 10s]}\nx: *b\ny: [*b, *b]\n")

    doc = load_yaml(path, "t.yaml")

    assert doc.data["y"][1] == {"attempts": 3, "delays": ["1s", "10s"]}  # type: ignore[union-attr]


def test_a_file_nested_too_deeply_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    """YAML's composer recurses: a deep document is a YAML error of its file."""
    path = tmp_path / "t.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")

    assert str(load_yaml(path, "t.yaml")) == "t.yaml: YAML error: nested too deeply"


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    """A configuration file over the size limit is refused by its size."""
    path = tmp_path / "t.yaml"
    with path.open("wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)

    assert "larger than the" in str(load_yaml(path, "t.yaml"))


def test_check_reports_bombs_in_topology_and_policies(check: Check) -> None:
    """Each bombed file is one FILE:LINE problem, and the other files are still checked."""
    problems = check(topology=BOMB_TOPOLOGY, policies={"retry.yaml": laughs(key="r")})

    assert any(p.startswith("topology.yaml:11: YAML aliases") for p in problems), problems
    assert any(p.startswith("policies/retry.yaml:6: YAML aliases") for p in problems), problems


async def test_a_reload_of_a_bomb_is_refused_with_its_line(write_config: WriteConfig) -> None:
    """Hot reload refuses the edit quickly and says where; the running config stays."""
    root = write_config(topology=BASE_TOPOLOGY)
    current = load_config(root)
    (root / "topology.yaml").write_text(BOMB_TOPOLOGY)

    new, result = await prepare_reload(current, None)

    assert new is None
    assert not result.ok
    assert any("topology.yaml:11: YAML aliases" in p for p in result.problems), result.problems


@pytest.mark.parametrize("target", ["topology.yaml", "policies/retry.yaml"])
def test_check_of_a_bomb_runs_in_bounded_memory(write_config: WriteConfig, target: str) -> None:
    """`mcp-router check` under a 1 GiB address-space limit ends with the problem, exit 1."""
    root = write_config(policies={"retry.yaml": {"retry": []}})
    (root / target).write_text(BOMB_TOPOLOGY if target == "topology.yaml" else laughs())
    limit = 1024 * 1024 * 1024
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, "
              f"({limit}, {limit})); from router.tools.cli import main; sys.exit(main())")

    done = subprocess.run([sys.executable, "-c", script, "check", "--config", str(root)],  # noqa: S603 -- our CLI
                          capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)

    assert done.returncode == 1, done.stderr
    assert "YAML aliases expand this document" in done.stdout + done.stderr
    assert "MemoryError" not in done.stderr
    assert "Traceback" not in done.stderr
