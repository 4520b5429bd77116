"""The command line without a broker: check's output and exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def _side_by_side(calls: Sequence[Callable[[], subprocess.CompletedProcess[str]]]) -> list[
        subprocess.CompletedProcess[str]]:
    """Independent commands run two at a time (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda call: call(), calls))


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


def _cli_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os  # noqa: PLC0415 -- only these tests change the environment

    return subprocess.run([sys.executable, "-m", "router", *args],  # noqa: S603
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env={**os.environ, **env})


NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def test_init_writes_a_configuration_that_checks(tmp_path: Path) -> None:
    """``init DIR`` writes topology, two types (one in two versions), policies, a README."""
    target = tmp_path / "shop"

    written = _cli("init", str(target))
    checked = _cli("check", "--config", str(target))

    assert written.returncode == 0, written.stderr
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "README.md", "policies/limits.yaml", "policies/retry.yaml",
        "schemas/OrderPlaced/evolution.yaml", "schemas/OrderPlaced/v1.json",
        "schemas/OrderPlaced/v2.json", "schemas/PaymentReceived/v1.json", "topology.yaml"]
    assert "mcp-router check --config" in (target / "README.md").read_text()
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: 1 exchange, 3 queues, 3 bindings, 3 routes, "
                                     "2 message types (3 schema versions), 1 retry rule, ")


def test_init_never_overwrites(tmp_path: Path) -> None:
    """A directory that already has a topology.yaml is left alone: exit 1, nothing written."""
    (tmp_path / "topology.yaml").write_text("mine\n")

    result = _cli("init", str(tmp_path))

    assert result.returncode == 1
    assert "exists already (nothing was written)" in result.stderr
    assert (tmp_path / "topology.yaml").read_text() == "mine\n"
    assert not (tmp_path / "schemas").exists()


def test_an_unreachable_broker_is_one_line_on_every_broker_command(tmp_path: Path) -> None:
    """No AMQP client log lines, no traceback: one ``mcp-router:`` line and exit 1."""
    commands = (["dlq", "list"], ["dlq", "list", "--group"], ["apply"], ["services"],
                ["check", "--live"], ["plan", "--via", "passive"],
                ["publish", "--type", "OrderCreated", "{}"],
                ["follow", "m-1", "--http", "127.0.0.1:1"])
    results = _side_by_side([lambda a=args: _cli(*a, "--config", ".", "--amqp-url", NO_BROKER)
                             for args in commands])

    for args, result in zip(commands, results, strict=True):
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stderr.startswith("mcp-router: "), (args, result.stderr)
        assert "is RabbitMQ running there?" in result.stderr or "follow" in args, args


def test_run_on_a_taken_http_port_says_so_in_one_line() -> None:
    """``--http`` on a port in use: exit 1 with the address and what to do, no traceback."""
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("run", "--config", ".", "--amqp-url", NO_BROKER, "--http",
                      f"127.0.0.1:{port}")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"mcp-router: cannot serve --http on 127.0.0.1:{port}: Address already in use; " \
           "choose another address (make run HTTP=127.0.0.1:8081)" in result.stderr


def test_a_body_that_is_not_json_points_at_raw() -> None:
    """``publish`` refuses a non-JSON body before connecting and names ``--raw``."""
    result = _cli("publish", "--type", "OrderCreated", "not json", "--amqp-url", NO_BROKER)

    assert result.returncode == 1
    assert "the body is not JSON" in result.stderr
    assert "--raw" in result.stderr


def test_usage_errors_exit_2_and_an_unreadable_token_file_exits_1(tmp_path: Path) -> None:
    """Exit codes: 2 for what argparse refuses, 1 for a token file that cannot be read."""
    usage, *counts, token = _side_by_side([
        lambda: _cli("follow"), lambda: _cli("run", "--prefetch", "0"),
        lambda: _cli("run", "--publish-channels", "-1"),
        lambda: _cli("run", "--journal-size", "-1"),
        lambda: _cli_env("run", "--config", ".", MCP_CONSOLE_TOKEN_FILE=str(tmp_path / "nope"))])

    assert usage.returncode == 2
    assert [c.returncode for c in counts] == [2, 2, 2]
    assert "MESSAGE_ID" in usage.stderr
    assert token.returncode == 1
    assert token.stderr.startswith("mcp-router: cannot read MCP_CONSOLE_TOKEN_FILE")


def test_a_directory_without_configuration_points_at_init(tmp_path: Path) -> None:
    """No topology.yaml and no schemas/: one problem naming ``init``, not one per file."""
    result = _cli("check", "--config", str(tmp_path))

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path}: no configuration here (no topology.yaml, no schemas/): mcp-router init "
        "DIR writes one to start from, or give --config DIR",
        f"mcp-router: 1 problem in {tmp_path}"]


def test_an_unreadable_otel_tls_file_stops_check_and_run_by_its_variable(
        tmp_path: Path) -> None:
    """A TLS file missing at start-up: ``check`` and ``run`` exit 1 before any broker, with
    one line naming the variable and the file, in JSON log mode too (it is not a log line)."""
    gone = str(tmp_path / "client.key")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
           "OTEL_EXPORTER_OTLP_CLIENT_KEY": gone, "MCP_LOG_FORMAT": "json"}
    results = _side_by_side([
        lambda: _cli_env("check", "--config", ".", **env),
        lambda: _cli_env("run", "--config", ".", "--amqp-url", NO_BROKER, **env)])

    for result in results:
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"mcp-router: OTEL_EXPORTER_OTLP_CLIENT_KEY names {gone!r}, which cannot be read "
            "(No such file or directory)"]
