"""Throwaway RabbitMQ nodes started from the installed ``rabbitmq-server``.

A ``Node`` has a name, AMQP, distribution and (optionally) management ports,
an Erlang cookie and data and log folders of its own, all under one temporary
directory, so it never touches the machine's own broker: tests can stop it,
kill it, close its connections or raise its alarms at will.  ``Cluster``
(``router.testing.cluster``) joins three of them.

Nodes run as the ``rabbitmq`` user when started by root (``su -s /bin/sh
rabbitmq -c ...``), else as the current user.  A watchdog shell beside each
node kills it when the process that started it goes away, so an interrupted
or killed test run leaves no node behind; ``close`` stops it and removes its
directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RABBITMQ_BIN", "Node", "NodeError", "Placement", "free_ports", "rabbitmq_installed"]

RABBITMQ_BIN = Path(os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
START_TIMEOUT = 90.0
CTL_TIMEOUT = 60.0
# rabbitmqctl itself listens on 35672-35682 (RABBITMQ_CTL_DIST_PORT_MIN..+10) and the
# machine's broker on 5672/15672/25672: node ports are drawn well away from those.
_PORT_RANGE = (20000, 32000)
_RESERVED = {25672, 15672, 5672}
WATERMARK = "0.4"  # vm_memory_high_watermark.relative of every node, unless settings say


class NodeError(RuntimeError):
    """A throwaway node did not start, or a command on it failed."""


def rabbitmq_installed() -> bool:
    """Whether ``rabbitmq-server`` is installed where nodes are started from."""
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on now."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(*_PORT_RANGE)  # noqa: S311 -- not cryptography
        if port in _RESERVED or port in chosen:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    return chosen


def _run_as() -> str | None:
    """The user nodes run as: ``rabbitmq`` for root, else None (the current user)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return None
    return "rabbitmq"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a node's folder goes (``base``, else the temp dir) and its Erlang cookie.

    The nodes of one cluster share a base and a cookie; a lone node gets a fresh cookie.
    """

    base: Path | None = None
    cookie: str | None = None


@dataclass
class Node:
    """One throwaway RabbitMQ node (not started until ``start``)."""

    name: str  # the Erlang node name, e.g. mcpt-1a2b3c-1@localhost
    home: Path  # everything of this node lives here
    amqp_port: int
    dist_port: int
    management_port: int | None = None
    settings: Mapping[str, str] = field(default_factory=dict)  # more rabbitmq.conf lines
    advanced: str = "[]."  # advanced.config (Erlang terms)
    cookie: str = ""
    booting: bool = False  # started, not yet waited for
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str, *, management: bool = False,
               settings: Mapping[str, str] | None = None, advanced: str = "[].",
               placement: Placement | None = None) -> Node:
        """A node with fresh ports and a fresh directory (``placement``: where, and its cookie)."""
        base, cookie = (placement.base, placement.cookie) if placement else (None, None)
        home = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
        ports = free_ports(3 if management else 2)
        node = cls(f"{name}@localhost", home, ports[0], ports[1],
                   ports[2] if management else None, dict(settings or {}), advanced,
                   cookie or secrets.token_hex(16))
        node._write_files()
        return node

    @property
    def url(self) -> str:
        """The AMQP URL of this node (guest is allowed from localhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str | None:
        if self.management_port is None:
            return None
        return f"http://guest:guest@127.0.0.1:{self.management_port}/"

    @property
    def short_name(self) -> str:
        return self.name.split("@", 1)[0]

    def _write_files(self) -> None:
        lines = {"listeners.tcp.default": f"127.0.0.1:{self.amqp_port}",
                 "log.console": "false", "log.file.level": "info",
                 "vm_memory_high_watermark.relative": WATERMARK}
        plugins = "[]."
        if self.management_port is not None:
            lines.update({"management.tcp.port": str(self.management_port),
                          "management.tcp.ip": "127.0.0.1"})
            plugins = "[rabbitmq_management]."
        lines.update(self.settings)
        (self.home / "rabbitmq.conf").write_text(
            "".join(f"{key} = {value}\n" for key, value in lines.items()))
        (self.home / "advanced.config").write_text(self.advanced + "\n")
        (self.home / "enabled_plugins").write_text(plugins + "\n")
        (self.home / "rabbitmq-env.conf").write_text("")  # not the machine's own
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        user = _run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in [self.home, *self.home.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _env(self) -> dict[str, str]:
        h = self.home
        return {"HOME": str(h), "RABBITMQ_CONF_ENV_FILE": str(h / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.name, "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(h / "mnesia"), "RABBITMQ_LOG_BASE": str(h / "log"),
                "RABBITMQ_CONFIG_FILE": str(h / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(h / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(h / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(h / "pid"), "ERL_EPMD_ADDRESS": "127.0.0.1",
                "LANG": "C.UTF-8"}

    def _shell(self, script: str) -> list[str]:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in self._env().items())
        command = f"cd {shlex.quote(str(self.home))} && export {exports} && {script}"
        user = _run_as()
        return ["su", "-s", "/bin/sh", user, "-c", command] if user else ["/bin/sh", "-c", command]

    def start(self) -> None:
        """Launch the node (``wait`` for it): also after a kill, with the same data."""
        if self._process is not None and self._process.poll() is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.home / "pid").unlink()
        server = shlex.quote(str(RABBITMQ_BIN / "rabbitmq-server"))
        out = shlex.quote(str(self.home / "server.out"))
        pid_file = shlex.quote(str(self.home / "pid"))
        # The watchdog: when the starting process is gone, the node goes too.
        script = (f"{server} >> {out} 2>&1 & server=$!; "
                  f"while [ -d /proc/{os.getpid()} ] && [ -d /proc/$server ]; do sleep 1; done; "
                  f"if [ -d /proc/$server ]; then kill -9 $(cat {pid_file}) $server; fi")
        self._process = subprocess.Popen(  # noqa: S603 -- fixed command, quoted values
            self._shell(script), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self.booting = True

    def wait(self, timeout: float = START_TIMEOUT) -> None:
        """Block until the node's applications run (``NodeError`` on failure)."""
        deadline = time.monotonic() + timeout
        while not (self.home / "pid").exists():
            if self._process is None or self._process.poll() is not None \
                    or time.monotonic() > deadline:
                raise NodeError(f"node {self.name} did not start: {self.log_tail()}")
            time.sleep(0.1)
        self.ctl("wait", "--timeout", str(int(max(deadline - time.monotonic(), 1))),
                 str(self.home / "pid"), timeout=timeout + 5)
        self.booting = False

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT, tool: str = "rabbitmqctl") -> str:
        """Run ``rabbitmqctl`` (or another CLI ``tool``) against this node."""
        command = " ".join([shlex.quote(str(RABBITMQ_BIN / tool)), "-n", self.name,
                            *map(shlex.quote, args)])
        try:
            result = subprocess.run(  # noqa: S603 -- fixed command, quoted values
                self._shell(command), capture_output=True, text=True, timeout=timeout,
                check=False)
        except subprocess.TimeoutExpired as exc:
            raise NodeError(f"{tool} {' '.join(args)} on {self.name} timed out") from exc
        if result.returncode != 0:
            raise NodeError(f"{tool} {' '.join(args)} on {self.name} failed: "
                            f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result.stdout

    def memory_alarm(self, raised: bool) -> None:
        """Raise a memory alarm (a 1-byte watermark), or clear it to the configured one."""
        if raised:
            self.ctl("set_vm_memory_high_watermark", "absolute", "1")
        else:
            self.ctl("set_vm_memory_high_watermark", self.settings.get(
                "vm_memory_high_watermark.relative", WATERMARK))

    def listening(self) -> bool:
        """Whether the node accepts AMQP connections (its application runs)."""
        try:
            with socket.create_connection(("127.0.0.1", self.amqp_port), timeout=2):
                return True
        except OSError:
            return False

    def os_pid(self) -> int | None:
        """The Erlang VM's process id, while the node runs."""
        try:
            pid = int((self.home / "pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def kill(self) -> None:
        """kill -9 the node's VM (``start`` brings it back with its data)."""
        pid = self.os_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(10)
        deadline = time.monotonic() + 10
        while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the node for good and remove its directory."""
        self.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the node's own log, for error messages."""
        text = ""
        for path in [self.home / "server.out", *sorted((self.home / "log").glob("*.log"))]:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"
