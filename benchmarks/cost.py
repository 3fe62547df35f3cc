"""Where a benchmark's CPU goes: per-process CPU time, and the database's operation counters.

`ProcessCpu` finds the processes of one benchmark run by a marker (the run's temporary folder,
which every one of them names in its command line or environment: the services' gateways file,
RabbitMQ's data folders, SecantusDB's storage path) and reads their CPU time from /proc (Linux).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pymongo

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _name(pid: str) -> str:
    argv = _read(Path("/proc", pid, "cmdline")).split(b"\0")
    program = Path(argv[0].decode()).name
    if program.startswith("python") and len(argv) > 1:
        program = Path(argv[1].decode()).name
    return {"beam.smp": "rabbitmq", "secantusd-py": "secantusdb"}.get(program, program)


def _cpu_seconds(pid: str) -> float:
    fields = _read(Path("/proc", pid, "stat")).rsplit(b")", 1)[-1].split()
    if len(fields) < 13:
        return 0.0  # the process has gone
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _mentions(pid: str, needle: bytes) -> bool:
    return needle in _read(Path("/proc", pid, "cmdline")) + _read(Path("/proc", pid, "environ"))


class ProcessCpu:
    """CPU seconds used, per process name, by the processes that mention `marker`, and by this
    process (the benchmark's client)."""

    def __init__(self, marker: str) -> None:
        needle = marker.encode()
        self._pids = {
            pid: _name(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit() and _mentions(pid, needle)
        }
        self._pids[str(os.getpid())] = "benchmark client"

    def named(self, name: str) -> dict[str, int]:
        """The ids of the processes called `name` (`secantusdb`, ...), each under its name and
        id."""
        return {f"{name}-{pid}": int(pid) for pid, named in self._pids.items() if named == name}

    def sample(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, name in self._pids.items():
            totals[name] = totals.get(name, 0.0) + _cpu_seconds(pid)
        return totals


def database_operations(mongo_url: str) -> dict[str, int]:
    """The server's operation counters (`serverStatus.opcounters`)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    with client:
        counters: dict[str, int] = client.admin.command("serverStatus")["opcounters"]
    return counters


def print_cost(
    cpu: tuple[dict[str, float], dict[str, float]],
    operations: tuple[dict[str, int], dict[str, int]],
    count: int,
    unit: str,
) -> None:
    """CPU milliseconds per `unit` of each process, most first, and database operations per
    `unit`, from samples (before, after) of `ProcessCpu` and `database_operations`."""
    before, after = cpu
    spent = {name: (after[name] - before.get(name, 0.0)) * 1000 / count for name in after}
    for name, milliseconds in sorted(spent.items(), key=lambda item: -item[1]):
        if milliseconds < 0.01:
            break  # helpers such as RabbitMQ's erl_child_setup
        print(f"  {name:22} {milliseconds:6.3f} ms CPU per {unit}", flush=True)
    print(f"  {'all':22} {sum(spent.values()):6.3f} ms CPU per {unit}", flush=True)
    done = {kind: n - operations[0].get(kind, 0) for kind, n in operations[1].items()}
    per_unit = ", ".join(f"{kind} {n / count:.3f}" for kind, n in done.items() if n)
    print(f"  database operations per {unit}: {per_unit or 'none'}", flush=True)
