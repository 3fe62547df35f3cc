"""A private RabbitMQ node from Debian's rabbitmq-server package, run as our own child process."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from twoway_devstack.processes import (
    LOCALHOST,
    ensure_port_free,
    free_port,
    log_tail,
    say,
    start_process,
    stop_process,
    wait_for_port,
)

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_SERVER = RABBITMQ_BIN / "rabbitmq-server"
RABBITMQCTL = RABBITMQ_BIN / "rabbitmqctl"
APT_INSTALL = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y --no-install-recommends rabbitmq-server"
)
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# Our own (empty) settings, so that nothing under /etc/rabbitmq leaks into the private node.
_CONFIG = "# twoway-devstack: a private node; ports and paths come from RABBITMQ_* variables\n"


def ensure_rabbitmq_installed() -> None:
    """Install Debian's rabbitmq-server when missing (as root), else say how to."""
    if RABBITMQ_SERVER.exists():
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"RabbitMQ is not installed ({RABBITMQ_SERVER} is missing). Install it with\n"
            f"    sudo sh -c '{APT_INSTALL}'\n"
            "or set TWOWAY_AMQP_URL to a broker of your own."
        )
    say("installing Debian's rabbitmq-server (apt-get) ...")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "rabbitmq-server"],
    ):
        subprocess.run(command, env=apt_env, stdout=sys.stderr, check=True)


def _node_env(folder: Path, node: str, port: int, dist_port: int, epmd_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": LOCALHOST,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
        # Distribution and a private epmd on loopback only; rabbitmqctl needs the same port.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": LOCALHOST,
        "ERL_EPMD_PORT": str(epmd_port),
    }


def _rabbitmqctl(env: Mapping[str, str], node: str, *args: str, timeout: float) -> str:
    """rabbitmqctl's output."""
    result = subprocess.run(
        [str(RABBITMQCTL), "-n", node, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


@contextlib.contextmanager
def _run_epmd(folder: Path) -> Iterator[int]:
    """A private epmd (Erlang port mapper) as our own child, on loopback; yields its port.

    Otherwise the node would start a shared `epmd -daemon` that outlives it.
    """
    epmd = shutil.which("epmd")
    if epmd is None:
        raise RuntimeError(
            "epmd is missing: install Debian's erlang-base (rabbitmq-server needs it)"
        )
    port = free_port()
    log_path = folder / "epmd.log"
    process = start_process(
        [epmd, "-port", str(port), "-address", LOCALHOST],
        env=os.environ,
        log_path=log_path,
        cwd=folder,
    )
    try:
        wait_for_port(process, port, what="epmd", log_path=log_path, timeout=10)
        yield port
    finally:
        stop_process(process, what="epmd")


@dataclass(frozen=True)
class RabbitNode:
    """A private node, ready to be started: again after it died, with the same data and ports."""

    node: str
    port: int
    folder: Path
    env: Mapping[str, str]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOCALHOST}:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.folder / "rabbitmq-server.log"

    def start(self) -> subprocess.Popen[bytes]:
        """Start the node in a session of its own (kill the session to kill the node)."""
        return start_process(
            [str(RABBITMQ_SERVER)], env=self.env, log_path=self.log_path, cwd=self.folder
        )

    def await_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Block until the node started by `process` accepts AMQP clients."""
        wait_for_port(
            process, self.port, what="RabbitMQ", log_path=self.log_path, timeout=READY_TIMEOUT
        )
        try:
            _rabbitmqctl(self.env, self.node, "await_startup", timeout=READY_TIMEOUT)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(
                f"{error}\nend of {self.log_path}:\n{log_tail(self.log_path)}"
            ) from None

    def busy_queues(self) -> list[str]:
        """`name ready unacknowledged consumers` of every queue holding messages."""
        output = _rabbitmqctl(
            self.env,
            self.node,
            *("-q", "list_queues", "name", "messages_ready", "messages_unacknowledged"),
            "consumers",
            timeout=STOP_TIMEOUT,
        )
        rows = [line.split() for line in output.splitlines()]
        return [
            " ".join(row)
            for row in rows  # with or without a header line, by version
            if len(row) == 4 and row[1].isdigit() and row[1:3] != ["0", "0"]
        ]

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """rabbitmqctl stop, else SIGTERM, else SIGKILL."""
        if process.poll() is not None:
            return
        started = time.monotonic()
        try:
            _rabbitmqctl(self.env, self.node, "stop", timeout=STOP_TIMEOUT)
            process.wait(STOP_TIMEOUT)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            say(f"rabbitmqctl stop did not stop {self.node} ({error}); terminating it")
        stop_process(process, what="RabbitMQ")
        say(f"RabbitMQ stopped in {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def rabbitmq_node(folder: Path, *, node: str, port: int, dist_port: int) -> Iterator[RabbitNode]:
    """A private RabbitMQ node with its data under folder, not yet started, and the private
    epmd it registers with (stopped when the block exits)."""
    ensure_rabbitmq_installed()
    ensure_port_free(port, "RabbitMQ (AMQP)")
    ensure_port_free(dist_port, "RabbitMQ (Erlang distribution)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enabled_plugins").write_text("[].\n")
    (folder / "rabbitmq.conf").write_text(_CONFIG)
    (folder / "rabbitmq-env.conf").write_text(_CONFIG)
    with _run_epmd(folder) as epmd_port:
        env = _node_env(folder, node, port, dist_port, epmd_port)
        say(f"inspect it: ERL_EPMD_PORT={epmd_port} {RABBITMQCTL} -n {node} list_queues")
        yield RabbitNode(node=node, port=port, folder=folder, env=env)


@contextlib.contextmanager
def run_rabbitmq(folder: Path, *, node: str, port: int, dist_port: int) -> Iterator[str]:
    """Run a private RabbitMQ node with its data under folder; yield its AMQP URL.

    The node is stopped (rabbitmqctl stop, else SIGTERM, else SIGKILL) when the block exits.
    """
    with rabbitmq_node(folder, node=node, port=port, dist_port=dist_port) as rabbit:
        say(f"starting RabbitMQ node {node} (data and logs in {folder}) ...")
        started = time.monotonic()
        process = rabbit.start()
        try:
            rabbit.await_ready(process)
            say(f"RabbitMQ ready at {rabbit.url} in {time.monotonic() - started:.1f} s")
            yield rabbit.url
        finally:
            rabbit.stop(process)
