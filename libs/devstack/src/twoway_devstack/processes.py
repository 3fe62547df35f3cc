"""Child processes and TCP ports for the project-local servers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child, where dlopen could deadlock on a lock held by a thread.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def say(message: str) -> None:
    """One progress line on stderr (stdout is left to the URLs and the Procfile's output)."""
    print(f"devstack: {message}", file=sys.stderr, flush=True)


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that nothing listens on right now (for throwaway servers)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOCALHOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def ensure_port_free(port: int, what: str) -> None:
    """Fail early, with a hint, when a fixed port is already taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError as error:
            raise RuntimeError(
                f"port {port} for {what} is in use ({error.strerror}): stop whatever listens "
                "there, pick another port (--amqp-port, --mongo-port), or point "
                "TWOWAY_AMQP_URL / TWOWAY_MONGO_URL at your own servers"
            ) from None


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so a killed devstack leaves no server."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_process(
    argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a server in a session of its own (a terminal's Ctrl-C reaches us, not it),
    its output appended to log_path."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_for_port(
    process: subprocess.Popen[bytes], port: int, *, what: str, log_path: Path, timeout: float
) -> None:
    """Poll until the server accepts TCP connections; fail fast if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} before listening on port "
                f"{port}; end of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with socket.create_connection((LOCALHOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not listen on port {port} within {timeout:.0f} s; "
                    f"end of {log_path}:\n{log_tail(log_path)}"
                ) from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], *, what: str, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL to its whole session if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"{what} did not stop within {timeout:.0f} s; killing it")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
