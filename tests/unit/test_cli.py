"""The command line without a broker: check's output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def test_check_passes_on_the_example_configuration() -> None:
    """``check`` on the repository root exits 0 and summarises what it loaded."""
    result = _cli("check", "--config", ".")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 4 exchanges")


def test_check_lists_every_problem_as_file_line_message(tmp_path: Path) -> None:
    """Bad files give one ``FILE:LINE: message`` per problem, exit 1 and no traceback."""
    (tmp_path / "schemas" / "T").mkdir(parents=True)
    (tmp_path / "schemas" / "T" / "v1.json").write_text('{\n  "type": 12\n}\n')
    (tmp_path / "topology.yaml").write_text(
        "exchanges:\n  - {name: e, type: topic, colour: red}\n"
        "routes:\n  - name: r\n    message_type: T\n    when: 'message.x >'\n"
        "    to: [{exchange: missing}]\n")

    result = _cli("check", "--config", str(tmp_path))

    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{tmp_path}/topology.yaml:2: unknown key 'colour' in exchange" in lines[0]
    assert any(f"{tmp_path}/topology.yaml:6: route 'r': CEL syntax error" in x for x in lines)
    assert any(f"{tmp_path}/topology.yaml:7: route 'r' sends to undeclared exchange 'missing'"
               in x for x in lines)
    assert any(f"{tmp_path}/schemas/T/v1.json:2: not a valid JSON Schema" in x for x in lines)
    assert lines[-1].startswith("mcp-router: ")


def test_run_refuses_a_broken_configuration_before_connecting(tmp_path: Path) -> None:
    """``run`` on a directory that does not check exits 1 with the problems."""
    (tmp_path / "topology.yaml").write_text("routes: [\n")

    result = _cli("run", "--config", str(tmp_path), "--amqp-url", "amqp://127.0.0.1:1/")

    assert result.returncode == 1
    assert f"{tmp_path}/topology.yaml:2: YAML error" in result.stderr
